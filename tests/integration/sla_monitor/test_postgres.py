"""On real PostgreSQL: two watches (two replicas) racing on the same due deadline emit
one sla.breached between them, and count it once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from leadpact.clock import ManualClock
from leadpact.db import Database
from leadpact.messaging import UnitOfWork, outbox
from leadpact.migrations import upgrade_async
from sla_monitor import store
from sla_monitor.app import SERVICE
from sla_monitor.metrics import SlaMetrics
from sla_monitor.watch import DeadlineWatch


async def test_two_watches_racing_breach_once(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await pg_database("sla_monitor")
    await upgrade_async(url, Path(SERVICE.migrations))
    db, clock = Database(url), ManualClock()
    try:
        leads = [str(uuid.uuid4()) for _ in range(20)]
        async with UnitOfWork(db, clock, "test") as uow:
            for lead_id in leads:
                await store.arm(
                    uow.session,
                    {
                        "lead_id": lead_id,
                        "clause": "first_contact",
                        "started_at": clock.now(),
                        "armed_at": clock.now(),
                        "due_at": clock.now() + timedelta(minutes=10),
                        "at_risk_at": None,
                        "owner": None,
                        "source": "meta",
                        "contract_version": "test-fast.1",
                    },
                )
            await uow.commit()
        registries = [CollectorRegistry(), CollectorRegistry()]
        watches = [
            DeadlineWatch(lambda: UnitOfWork(db, clock, "sla-monitor"), clock, SlaMetrics(r))
            for r in registries
        ]
        clock.advance(timedelta(minutes=11))
        await asyncio.gather(*(w.breach_due(clock.now()) for w in watches))
        async with db.session() as session:
            emitted = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.topic == "sla.breached")
            )
            breached = await session.scalar(
                select(func.count())
                .select_from(store.DeadlineRow)
                .where(store.DeadlineRow.status == store.BREACHED)
            )
        assert emitted == len(leads)
        assert breached == len(leads)
        counted = sum(
            r.get_sample_value(
                "leadpact_sla_breaches_total",
                {"clause": "first_contact", "source": "meta", "team": "sales"},
            )
            or 0.0
            for r in registries
        )
        assert counted == len(leads)
    finally:
        await db.dispose()
