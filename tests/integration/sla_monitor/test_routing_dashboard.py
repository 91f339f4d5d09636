"""The assignment panels of the "Lead flow" dashboard, run for real: Prometheus (Debian
package) scrapes a running sla-monitor that routed two MQLs; each panel query returns data
with the team and member labels."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.events import LeadScored, envelope
from leadpact.service import create_app
from leadpact.settings import Settings
from sla_monitor.app import SERVICE
from tests.fixtures.distributed import free_port
from tests.fixtures.waiting import eventually
from tests.integration.sla_monitor.test_dashboards import (
    prometheus,
    prometheus_binary,
    query,
    serving,
)
from tests.integration.sla_monitor.test_routing import ROUTING_CONTRACT, VERSION

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy/grafana/dashboards/lead-flow.json"


def routing_panels() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = [
        (p["title"], t["expr"])
        for p in board["panels"]
        for t in p["targets"]
        if "assigned" in t["expr"] or "owner_open" in t["expr"]
    ]
    assert len(found) == 2, found
    return found


async def test_assignment_panels_return_data(tmp_path: Path) -> None:
    prometheus_binary()
    bus, clock = MemoryBus(partitions=3), ManualClock()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sla.db'}",
        contract_path=ROUTING_CONTRACT,
        log_json=False,
        relay_poll_seconds=0.05,
    )
    app = create_app(SERVICE, settings, clock=clock, bus=bus)
    port, prom_port = free_port(), free_port()
    async with serving(app, port):
        for _ in range(2):
            scored = LeadScored(
                lead_id=str(uuid.uuid4()),
                points=80,
                probability=0.95,
                tier="mql",
                scored_at=clock.now(),
            )
            event = envelope(scored, source="test", time=clock.now(), contract_version=VERSION)
            await bus.publish(event.topic, event.subject, event.to_json())
        await eventually(lambda: len(bus.messages("lead.assigned")) == 2)
        with prometheus(tmp_path, port, prom_port) as url:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                for title, expr in routing_panels():

                    async def answers(expr: str = expr) -> list[dict[str, Any]] | None:
                        return await query(client, expr)

                    try:
                        result = await eventually(answers, timeout=30, interval=0.5)
                    except AssertionError as exc:
                        raise AssertionError(f"panel {title!r}: no data for {expr}") from exc
                    members = {r["metric"]["member"] for r in result}  # type: ignore[index]
                    assert members == {"lucia"}, (title, result)
