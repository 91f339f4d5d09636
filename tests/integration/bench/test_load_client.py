"""The load client a user points at their deployment: it keeps its schedule honest when the
server falls behind, and it never piles more open requests on it than it was told."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI

from bench.load import percentile, run
from tests.fixtures.waiting import eventually

SERVICE_SECONDS = 0.05


@dataclass
class SlowIntake:
    url: str
    open_now: int = 0
    most_open: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def slow_intake() -> AsyncIterator[SlowIntake]:
    """An intake stand-in that takes 50 ms per lead and counts the requests open at once."""
    port = free_port()
    state = SlowIntake(url=f"http://127.0.0.1:{port}")
    app = FastAPI()

    @app.post("/v1/leads", status_code=202)
    async def accept() -> dict[str, str]:
        state.open_now += 1
        state.most_open = max(state.most_open, state.open_now)
        await asyncio.sleep(SERVICE_SECONDS)
        state.open_now -= 1
        return {"lead_id": str(uuid.uuid4())}

    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    yield state
    server.should_exit = True
    await task


async def test_open_requests_never_exceed_the_cap(slow_intake: SlowIntake) -> None:
    outcome = await run(slow_intake.url, rate=200, seconds=0.5, limit=100, in_flight=4)

    assert len(outcome.latencies) == 100
    assert slow_intake.most_open == 4


async def test_a_server_that_falls_behind_shows_up_as_latency(slow_intake: SlowIntake) -> None:
    """200 leads/s offered to a server that manages 80 (4 open × 50 ms): the last leads wait
    in the client, and their latency counts from when they were due, not from when a slot
    freed up (which would report ~50 ms for every lead)."""
    outcome = await run(slow_intake.url, rate=200, seconds=0.5, limit=100, in_flight=4)

    due = sorted(outcome.started.values())
    assert due[-1] - due[0] == pytest.approx(99 / 200, abs=0.02)
    assert percentile(outcome.latencies, 0.99) > 0.5
