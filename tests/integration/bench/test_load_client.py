"""The load client a user points at their deployment: it keeps its schedule honest when the
server falls behind, it never piles more open requests on it than it was told, it reports
what it sent, and its leads look like a deployment's (many companies, each lead a different
person, valid for intake) unless the single-company worst case is asked for."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from fastapi import FastAPI, Request, Response

from bench.load import LeadMix, percentile, run
from intake.domain.lead import LeadIn
from tests.fixtures.waiting import eventually

SERVICE_SECONDS = 0.05
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class StandIn:
    """What the intake stand-in saw and how it answers."""

    url: str
    delay: float = 0.0
    refuse_every: int = 0  # every n-th lead gets a 422 (0: none)
    open_now: int = 0
    most_open: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    """An intake stand-in on uvicorn that keeps each body, answers 202 with a fresh lead id
    (or 422 when told), and counts the requests open at once."""
    port = free_port()
    state = StandIn(url=f"http://127.0.0.1:{port}")
    app = FastAPI()

    @app.post("/v1/leads", status_code=202)
    async def accept(request: Request, response: Response) -> dict[str, str]:
        state.open_now += 1
        state.most_open = max(state.most_open, state.open_now)
        state.bodies.append(await request.json())
        if state.delay:
            await asyncio.sleep(state.delay)
        state.open_now -= 1
        if state.refuse_every and len(state.bodies) % state.refuse_every == 0:
            response.status_code = 422
            return {"detail": "refused"}
        lead_id = str(uuid.uuid4())
        state.issued.append(lead_id)
        return {"lead_id": lead_id}

    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    yield state
    server.should_exit = True
    await task


@pytest.fixture
def slow_intake(stand_in: StandIn) -> StandIn:
    """The stand-in taking 50 ms per lead."""
    stand_in.delay = SERVICE_SECONDS
    return stand_in


async def test_open_requests_never_exceed_the_cap(slow_intake: StandIn) -> None:
    outcome = await run(slow_intake.url, rate=200, seconds=0.5, limit=100, in_flight=4)

    assert len(outcome.latencies) == 100
    assert slow_intake.most_open == 4


async def test_a_server_that_falls_behind_shows_up_as_latency(slow_intake: StandIn) -> None:
    """200 leads/s offered to a server that manages 80 (4 open × 50 ms): the last leads wait
    in the client, and their latency counts from when they were due, not from when a slot
    freed up (which would report ~50 ms for every lead)."""
    outcome = await run(slow_intake.url, rate=200, seconds=0.5, limit=100, in_flight=4)

    due = sorted(outcome.started.values())
    assert due[-1] - due[0] == pytest.approx(99 / 200, abs=0.02)
    assert percentile(outcome.latencies, 0.99) > 0.5


async def test_the_client_reports_what_it_sent(stand_in: StandIn) -> None:
    outcome = await run(stand_in.url, rate=500, seconds=1, limit=60, mix=LeadMix(seed=11))

    expected = LeadMix(seed=11)
    assert sorted(b["email"] for b in stand_in.bodies) == sorted(
        expected.lead(i)["email"] for i in range(60)
    )
    assert outcome.sent == 60
    assert sorted(outcome.started) == sorted(stand_in.issued)
    assert outcome.errors == {}
    assert outcome.seed == 11


async def test_refusals_are_counted_by_status(stand_in: StandIn) -> None:
    stand_in.refuse_every = 3

    outcome = await run(stand_in.url, rate=500, seconds=1, limit=30)

    assert outcome.errors == {"422": 10}
    assert len(outcome.started) == 20


async def test_a_request_past_its_timeout_is_an_error_of_its_type(stand_in: StandIn) -> None:
    stand_in.delay = 0.5

    outcome = await run(stand_in.url, rate=100, seconds=1, limit=3, timeout=0.1)

    assert outcome.errors == {"TimeoutError": 3}
    assert outcome.started == {}


async def test_a_server_that_is_not_there_is_an_error_of_its_type() -> None:
    outcome = await run(f"http://127.0.0.1:{free_port()}", rate=100, seconds=1, limit=3)

    assert outcome.errors == {"ClientConnectorError": 3}


def test_the_mix_has_many_companies_and_every_lead_is_a_different_person() -> None:
    mix = LeadMix(seed=3)
    leads = [mix.lead(i) for i in range(2000)]

    companies = Counter(lead["company"] for lead in leads)
    assert len(companies) > 500
    assert 2 < companies.most_common(1)[0][1] < 0.2 * len(leads)  # some recur, none dominate
    assert len({lead["email"].split("@")[1] for lead in leads}) == len(companies)
    assert len({lead["title"] for lead in leads}) > 20
    assert len({lead["company_size"] for lead in leads}) > 300
    assert len({lead["email"] for lead in leads}) == len(leads)
    assert len({lead["phone"] for lead in leads}) == len(leads)


def test_every_lead_is_valid_for_intake_and_unchanged_by_its_cleaning() -> None:
    """Clean already: intake's cleaning gives back the same email and phone, so what the
    client sends is what intake compares for resubmissions."""
    for mix in (LeadMix(seed=5), LeadMix(1, seed=5)):
        for i in range(500):
            lead = mix.lead(i)
            clean = LeadIn.model_validate(lead)
            assert (clean.email, clean.phone) == (lead["email"], lead["phone"])


def mql_rules() -> tuple[re.Pattern[str], int]:
    """The title pattern and the company size the default contract gives points for."""
    contract = yaml.safe_load((ROOT / "shared/leadpact/contracts/default.yaml").read_text())
    points = contract["mql"]["points"]
    title = next(p["matches"] for p in points if p.get("field") == "title")
    size = next(p["gte"] for p in points if p.get("field") == "company_size")
    return re.compile(title), size


def test_every_lead_is_an_mql_under_the_default_contract_unless_told() -> None:
    """bench.e2e times every lead to its armed SLA deadline: sla-monitor arms MQLs only."""
    title, size = mql_rules()

    leads = [LeadMix(seed=4).lead(i) for i in range(1000)]
    assert all(title.search(lead["title"]) and lead["company_size"] >= size for lead in leads)
    mix = LeadMix(seed=4, mql_share=0.4)
    senior = sum(bool(title.search(mix.lead(i)["title"])) for i in range(1000))
    assert 340 < senior < 460


def test_the_same_seed_gives_the_same_leads_and_another_seed_other_people() -> None:
    first, again, other = LeadMix(seed=42), LeadMix(seed=42), LeadMix(seed=43)

    leads = [first.lead(i) for i in range(200)]
    assert leads == [again.lead(i) for i in range(200)]
    others = [other.lead(i) for i in range(200)]
    assert not {lead["email"] for lead in leads} & {lead["email"] for lead in others}


def test_one_company_is_the_old_worst_case() -> None:
    mix = LeadMix(1, seed=9)
    leads = [mix.lead(i) for i in range(300)]

    assert {(lead["company"], lead["title"]) for lead in leads} == {
        ("Acme Robotics", "Head of Operations")
    }
    assert len({lead["email"] for lead in leads}) == len({lead["phone"] for lead in leads}) == 300


async def test_the_command_prints_one_json_line_and_records_the_send_times(
    stand_in_process: str, tmp_path: Path
) -> None:
    record = tmp_path / "sent.json"
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load", "--intake", stand_in_process, "--rate", "200",
        "--seconds", "5", "--max", "40", "--seed", "7", "--companies", "1", "--record", str(record),
        stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(command.communicate(), 60)

    line = json.loads(out.decode().strip().splitlines()[-1])
    assert set(line) == {
        "sent", "accepted", "errors", "rate_per_s", "p50_ms", "p95_ms", "p99_ms", "seed"
    }  # fmt: skip
    assert (line["sent"], line["accepted"], line["errors"], line["seed"]) == (40, 40, {}, 7)
    assert len(json.loads(record.read_text())) == 40


@pytest.fixture
async def stand_in_process() -> AsyncIterator[str]:
    """The stand-in as its own process, for the command (which runs its own event loop)."""
    port = free_port()
    code = (
        "import uuid, uvicorn\n"
        "from fastapi import FastAPI\n"
        "app = FastAPI()\n"
        "@app.post('/v1/leads', status_code=202)\n"
        "async def accept(body: dict) -> dict:\n"
        "    return {'lead_id': str(uuid.uuid4())}\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')\n"
    )
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    try:
        await eventually(lambda: listening(port))
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        await server.wait()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
