"""The "SLA compliance" dashboard tested for real: a Prometheus (Debian package) scrapes a
running sla-monitor on a free port, the test drives an arm, a breach and a met contact, and
every panel query must return data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.events import LeadContacted, LeadScored, envelope
from leadpact.service import create_app
from leadpact.settings import Settings
from sla_monitor.app import SERVICE
from tests.fixtures.distributed import free_port
from tests.fixtures.system import TEST_CONTRACT
from tests.fixtures.waiting import eventually

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy/grafana/dashboards/sla-compliance.json"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus missing: `make system-deps` installs it")
        pytest.skip("prometheus not installed (Debian package prometheus)")
    return found


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=20)
        yield
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def prometheus(tmp: Path, target_port: int, port: int) -> Iterator[str]:
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sla-monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    process = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def publish(bus: MemoryBus, clock: ManualClock, data: Any) -> None:
    event = envelope(data, source="test", time=clock.now(), contract_version="test-fast.1")
    await bus.publish(event.topic, event.subject, event.to_json())


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]] | None:
    """The query's series, or None while Prometheus is starting (it answers 503 in text)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        found = await client.get("/api/v1/query", params={"query": expr})
        if found.status_code == 200:
            result: list[dict[str, Any]] = found.json()["data"]["result"]
            return result or None
    return None


def panel_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


async def test_every_sla_panel_query_returns_data(tmp_path: Path) -> None:
    prometheus_binary()
    bus, clock = MemoryBus(partitions=3), ManualClock()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sla.db'}",
        contract_path=TEST_CONTRACT,
        log_json=False,
        relay_poll_seconds=0.05,
    )
    app = create_app(SERVICE, settings, clock=clock, bus=bus)
    port, prom_port = free_port(), free_port()
    async with serving(app, port):
        ignored, answered = str(uuid.uuid4()), str(uuid.uuid4())
        for lead_id in (ignored, answered):
            scored = LeadScored(
                lead_id=lead_id, points=60, tier="mql", source="meta", scored_at=clock.now()
            )
            await publish(bus, clock, scored)
        contact = LeadContacted(
            lead_id=answered,
            channel="phone",
            outcome="connected",
            contacted_at=clock.now() + timedelta(minutes=3),
        )
        clock.advance(timedelta(minutes=3))
        await publish(bus, clock, contact)
        await eventually(lambda: bus.messages("lead.contacted"))
        # At 80 % of the 10-minute allowance the ignored lead is at risk; then it breaches.
        clock.advance(timedelta(minutes=5))
        await eventually(lambda: bus.messages("sla.at_risk"))
        clock.advance(timedelta(minutes=3))
        await eventually(lambda: bus.messages("sla.breached"))
        with prometheus(tmp_path, port, prom_port) as url:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                for title, expr in panel_queries():

                    async def answers(expr: str = expr) -> list[dict[str, Any]] | None:
                        return await query(client, expr)

                    try:
                        await eventually(answers, timeout=30, interval=0.5)  # type: ignore[arg-type]
                    except AssertionError as exc:
                        raise AssertionError(f"panel {title!r}: no data for {expr}") from exc
