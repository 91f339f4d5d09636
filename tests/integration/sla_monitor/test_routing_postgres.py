"""On real PostgreSQL: two sla-monitor instances consume the same lead.scored events at
once (a rebalance hands a partition over while the old owner is still working), and a
lead is also scored twice: every lead is assigned once, the round-robin takes every turn
exactly once (state in the database, rows locked per team), and the deadline names the
owner."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event, func, select

from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.db import Database
from leadpact.events import LeadScored, envelope
from leadpact.messaging import outbox
from leadpact.service import ServiceContext, build_dispatcher, create_app, inject
from leadpact.settings import Settings
from sla_monitor import store as deadlines
from sla_monitor.app import EVENT_HANDLERS, SERVICE
from sla_monitor.routing import store

CONTRACT = Path(__file__).parent / "contracts" / "routing.yaml"
LEADS = 30


def dispatcher(ctx: ServiceContext) -> EventDispatcher:
    return EventDispatcher(
        "leadpact-sla-monitor",
        {model: inject(handler, ctx) for model, handler in EVENT_HANDLERS.items()},
        ctx.uow,
        ctx.clock,
        ctx.metrics,
    )


def message(data: LeadScored, clock: ManualClock) -> Message:
    event = envelope(data, source="scoring", time=clock.now(), contract_version="test-routing.1")
    return Message(event.topic, event.subject, event.to_json())


async def test_two_consumers_assign_each_lead_once(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await pg_database("sla_monitor")
    clock = ManualClock()
    settings = Settings(
        database_url=url, contract_path=CONTRACT, relay_poll_seconds=3600, log_json=False
    )
    async with AsyncExitStack() as stack:
        apps: list[FastAPI] = []
        buses = [MemoryBus(), MemoryBus()]
        for bus in buses:
            app = create_app(SERVICE, settings, clock=clock, bus=bus)
            await stack.enter_async_context(app.router.lifespan_context(app))
            apps.append(app)
        first, second = (dispatcher(a.state.ctx) for a in apps)
        deliveries = []
        for _ in range(LEADS):
            lead = LeadScored(
                lead_id=str(uuid.uuid4()),
                points=80,
                probability=0.95,  # the "hot" rule: enterprise
                tier="mql",
                scored_at=clock.now(),
            )
            same = message(lead, clock)
            deliveries += [first(same), second(same), second(message(lead, clock))]
        await asyncio.gather(*deliveries)
    # Both instances stopped: their relays flushed what they committed.
    db = Database(url)
    try:
        async with db.session() as session:
            assignments = (await session.scalars(select(store.AssignmentRow))).all()
            unpublished = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.topic == "lead.assigned")
            )
            members = {
                r.member_id: r for r in (await session.scalars(select(store.MemberStateRow)))
            }
            first_contact = {
                r.lead_id: r.owner
                for r in await session.scalars(
                    select(deadlines.DeadlineRow).where(
                        deadlines.DeadlineRow.clause == "first_contact"
                    )
                )
            }
    finally:
        await db.dispose()
    published = sum(len(b.messages("lead.assigned")) for b in buses)
    assert len(assignments) == LEADS
    assert (unpublished, published) == (0, LEADS)
    # lucia has share 2, jonas 1, nora is out of hours (04:00 in New York).
    assert Counter(a.owner for a in assignments) == {"lucia": 20, "jonas": 10}
    assert (members["lucia"].assigned, members["lucia"].open_leads) == (20, 20)
    assert (members["jonas"].assigned, members["jonas"].open_leads) == (10, 10)
    assert members["nora"].assigned == 0
    assert first_contact == {a.lead_id: a.owner for a in assignments}


async def test_a_batch_locks_its_teams_in_one_order_whatever_the_order_of_its_leads(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    """Two partitions' batches over the same teams must lock them in the same order, or they
    deadlock (PostgreSQL's 1 s timeout, then the batch goes one by one)."""
    url = await pg_database("sla_monitor")
    clock = ManualClock()
    settings = Settings(
        database_url=url, contract_path=CONTRACT, relay_poll_seconds=3600, log_json=False
    )
    app = create_app(SERVICE, settings, clock=clock, bus=MemoryBus())
    locked: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FOR UPDATE" in statement and "routing_teams" in statement:
            locked.extend(p for p in ("enterprise", "smb") if p in repr(parameters))

    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", record)
        leads = [
            LeadScored(  # below the "hot" rule: the fallback team, smb
                lead_id=str(uuid.uuid4()), points=60, probability=0.5, tier="mql",
                scored_at=clock.now(),
            ),
            LeadScored(  # the "hot" rule: enterprise
                lead_id=str(uuid.uuid4()), points=80, probability=0.95, tier="mql",
                scored_at=clock.now(),
            ),
        ]  # fmt: skip
        await build_dispatcher(SERVICE, ctx).handle_batch([message(d, clock) for d in leads])

    assert list(dict.fromkeys(locked)) == ["enterprise", "smb"]  # first lock of each
