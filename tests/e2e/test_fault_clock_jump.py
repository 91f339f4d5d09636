"""The clock jumping forward.

A service process reads the wall clock and has no setting to replace it, so a separate
process cannot be handed a manual clock. The services do take an injectable clock in code
(``create_app(definition, settings, clock=...)``): here the sla-monitor — the service whose
behaviour depends on time — runs in the test's process with a ``ManualClock``, against the
same tansu broker and its own PostgreSQL database, while intake, scoring and crm-sync run as
their own processes on the wall clock. The test then jumps the sla-monitor's clock forward by
an hour and by a month (every deadline at once falls due, each clause breached once), keeps
leads arriving after the jump (their deadlines are already past when they are armed, as
with a clock that runs ahead of the others), and restarts the sla-monitor after the jump:
nothing is breached twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from leadpact.clock import ManualClock
from leadpact.embedded import load_services
from leadpact.service import create_app
from leadpact.settings import Settings
from tests.e2e.faults import (
    SERVICES,
    Auditor,
    connect,
    every_breach_once,
    every_lead_everywhere_once,
    post_leads,
)
from tests.fixtures.distributed import DistributedFactory, DistributedSystem
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "fast.yaml"  # 10 min, 30 d


@asynccontextmanager
async def sla_monitor_in_process(
    system: DistributedSystem, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        bus_url=system.bus_url,
        database_url=system.databases["sla-monitor"],
        contract_path=CONTRACT,
        kafka_enable_idempotence=False,
        kafka_partitions=3,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        relay_poll_seconds=0.1,
        log_json=False,
        log_level="WARNING",
    )
    app = create_app(load_services()["sla-monitor"], settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sla-monitor"
        ) as client,
    ):
        yield client


async def breached(system: DistributedSystem, clause: str) -> set[str]:
    async with connect(system, "sla-monitor") as conn:
        rows = await conn.fetch(
            "SELECT lead_id FROM sla_deadlines WHERE status = 'breached' AND clause = $1",
            clause,
        )
    return {r[0] for r in rows}


async def test_the_clock_jumping_forward_breaches_each_due_deadline_once(
    distributed_factory: DistributedFactory, pg_database: Callable[[str], Awaitable[str]]
) -> None:
    system = await distributed_factory(CONTRACT, only=[s for s in SERVICES if s != "sla-monitor"])
    system.databases["sla-monitor"] = await pg_database("sla-monitor")
    clock = ManualClock(datetime.now(UTC))
    async with Auditor(system.bus_url, ["sla.breached"]) as auditor:
        async with sla_monitor_in_process(system, clock):
            first = await post_leads(system["intake"], 6, pause=0)
            await every_lead_everywhere_once(system, first)
            assert await breached(system, "first_contact") == set(), "nothing due yet"

            clock.advance(timedelta(hours=1))  # the jump: every first contact is now late
            first_ids = [lead["lead_id"] for lead in first]
            await every_breach_once(system, auditor, first_ids)

            # Leads keep coming; on this clock their deadlines are past when armed.
            later = await post_leads(system["intake"], 4, pause=0)
            await every_lead_everywhere_once(system, first + later)

            async def all_late_breached() -> bool:
                clock.advance(timedelta(seconds=2))  # time goes on after the jump
                wanted = {lead["lead_id"] for lead in later}
                return wanted <= await breached(system, "first_contact")

            await eventually(all_late_breached, 30, interval=0.2)
            ids = first_ids + [lead["lead_id"] for lead in later]
            await every_breach_once(system, auditor, ids)

        # Restarted after a jump of a month: the outcome clause (30 d) falls due for all,
        # and nothing breached before the restart is breached again.
        clock.advance(timedelta(days=31))
        async with sla_monitor_in_process(system, clock):
            await every_breach_once(system, auditor, ids, clause="outcome")
            await every_breach_once(system, auditor, ids)
