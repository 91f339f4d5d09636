"""On real PostgreSQL: the migration applies, the funnel folds events the same way, the
spend upsert works, and two recycle workers racing on due recycles emit each once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from feedback import store
from feedback.app import SERVICE
from feedback.handlers import project
from feedback.metrics import FeedbackMetrics
from feedback.recycle import RecycleWorker
from leadpact.clock import ManualClock
from leadpact.contract import ContractBook
from leadpact.db import Database
from leadpact.events import LeadContacted, LeadRejected, LeadScored, envelope
from leadpact.messaging import UnitOfWork, outbox
from leadpact.migrations import upgrade_async
from tests.fixtures.system import TEST_CONTRACT


async def test_funnel_and_recycles_on_postgres(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await pg_database("feedback")
    await upgrade_async(url, Path(SERVICE.migrations))
    db, clock = Database(url), ManualClock()
    contracts = ContractBook.load(TEST_CONTRACT)
    try:
        leads = [str(uuid.uuid4()) for _ in range(10)]
        async with UnitOfWork(db, clock, "test") as uow:
            for lead_id in leads:
                for data in (
                    LeadScored(lead_id=lead_id, points=60, tier="mql", scored_at=clock.now()),
                    LeadContacted(
                        lead_id=lead_id,
                        channel="phone",
                        outcome="no_answer",
                        contacted_at=clock.now() + timedelta(minutes=5),
                    ),
                    LeadContacted(  # an earlier contact reported later still wins
                        lead_id=lead_id,
                        channel="email",
                        outcome="no_answer",
                        contacted_at=clock.now() + timedelta(minutes=2),
                    ),
                    LeadRejected(lead_id=lead_id, reason="out_of_budget", rejected_at=clock.now()),
                ):
                    event = envelope(
                        data, source="t", time=clock.now(), contract_version="test-fast.1"
                    )
                    await project(event, uow.session, contracts)
            await store.upsert_spend(
                uow.session,
                [
                    {
                        "day": date(2026, 11, 2),
                        "source": "meta",
                        "campaign": "q4",
                        "amount": Decimal(v),
                        "currency": "EUR",
                    }
                    for v in ("10.00", "25.50")
                ],
            )
            await uow.commit()
        async with db.session() as session:
            row = await store.lead(session, leads[0])
            assert row is not None and row.mql_at == clock.now()
            assert row.first_contact_at == clock.now() + timedelta(minutes=2)
            assert row.reject_reason == "out_of_budget"
            assert len(await store.attempts_of(session, leads[0])) == 2
            spend = await store.spend_between(session, date(2026, 11, 1), date(2026, 12, 1))
            assert [s.amount for s in spend] == [Decimal("25.50")]

        workers = [
            RecycleWorker(lambda: UnitOfWork(db, clock, "feedback"), clock, FeedbackMetrics(r))
            for r in (CollectorRegistry(), CollectorRegistry())
        ]
        clock.advance(timedelta(days=91))
        await asyncio.gather(*(w.recycle_due(clock.now()) for w in workers))
        async with db.session() as session:
            emitted = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.topic == "lead.recycled")
            )
        assert emitted == len(leads)
    finally:
        await db.dispose()
