"""feedback's batch handlers (lead.created, lead.scored, lead.assigned, lead.contacted,
lead.accepted, lead.rejected) leave the same rows, emit the same events (none, so far) and
wake the recycle worker for the same times as its event handler run on each event in
order.

Each case replays a history one event at a time into two fresh databases, then hands the
same batch to the real dispatcher of each: in one, ``handle_batch`` (the batch handler, in
one call); in the other, one event after the other (the event handler, a transaction each).
Every row of feedback's tables (ids included) and the outbox must then be equal. Real
SQLite and PostgreSQL, feedback's own migrations, no mock."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from feedback import store
from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.embedded import load_services
from leadpact.events import (
    CloudEvent,
    EventData,
    LeadAccepted,
    LeadAssigned,
    LeadContacted,
    LeadCreated,
    LeadRejected,
    LeadScored,
    LeadSource,
    Tier,
    envelope,
)
from leadpact.messaging import outbox
from leadpact.migrations import upgrade_async
from leadpact.service import HandlerFunction, ServiceContext, build_context, build_dispatcher
from leadpact.settings import Settings
from tests.fixtures.system import TEST_CONTRACT

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TABLES = (store.LeadRow, store.TouchRow, store.AttemptRow, store.RecycleRow, store.BreachRow)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def created(lead_id: str, at: float, platform: str | None = "web", **source: str) -> LeadCreated:
    return LeadCreated(
        lead_id=lead_id, created_at=minutes(at), source=LeadSource(platform=platform, **source)
    )


def scored(
    lead_id: str, at: float, points: int = 60, tier: Tier = "mql", source: str | None = "ads"
) -> LeadScored:
    return LeadScored(
        lead_id=lead_id, points=points, tier=tier, scored_at=minutes(at), source=source
    )


def assigned(lead_id: str, owner: str, at: float = 3) -> LeadAssigned:
    return LeadAssigned(lead_id=lead_id, owner=owner, assigned_at=minutes(at))


def contacted(lead_id: str, at: float, owner: str | None = "ana") -> LeadContacted:
    return LeadContacted(
        lead_id=lead_id, channel="phone", outcome="connected", owner=owner, contacted_at=minutes(at)
    )


def accepted(lead_id: str, at: float, owner: str | None = "ana") -> LeadAccepted:
    return LeadAccepted(lead_id=lead_id, owner=owner, accepted_at=minutes(at))


def rejected(
    lead_id: str, at: float, reason: str = "out_of_budget", owner: str | None = None
) -> LeadRejected:
    return LeadRejected(lead_id=lead_id, reason=reason, owner=owner, rejected_at=minutes(at))


@dataclass(frozen=True)
class Case:
    """A history (handled one by one in both databases) and the batch under test (all of
    one topic)."""

    history: Sequence[EventData]
    batch: Sequence[EventData]


CASES = {
    "created": Case(
        history=[scored("known", 1), created("older", 0)],
        batch=[
            created("a", 0, campaign="q1"),
            created("b", 1, platform=None, utm_campaign="utm-q1"),
            created("c", 2, platform=None),
            created("known", 5, campaign="q2"),  # its row came from lead.scored first
            created("older", -5, platform="fair"),  # earlier than stored: taken
        ],
    ),
    "created, same lead twice": Case(
        history=[],
        batch=[
            created("a", 5, campaign="q1"),
            created("b", 1),
            created("a", 2, platform="fair", campaign="q2"),  # earlier, new touchpoint
            created("a", 5, campaign="q1"),  # the same touchpoint again: skipped
        ],
    ),
    "scored": Case(
        history=[
            created("with-source", 0),
            created("no-source", 0, platform=None),
            scored("earlier-mql", 1, points=40),
            scored("later-mql", 20, points=45),
        ],
        batch=[
            scored("with-source", 2),
            scored("no-source", 2, source="ads"),
            scored("new", 3, source=None),
            scored("cold", 3, tier="nurture"),  # not an MQL: no row
            scored("earlier-mql", 5, points=90),  # not the first MQL: points kept
            scored("later-mql", 10, points=95),  # before the stored one: the first now
        ],
    ),
    "scored, same lead twice": Case(
        history=[created("a", 0, platform=None)],
        batch=[
            scored("a", 10, points=50, source="ads"),
            scored("b", 4, points=61),
            scored("a", 5, points=70, source="crm"),  # earlier than the first: wins
            scored("b", 9, points=99),  # later: keeps 61
            scored("c", 4, tier="disqualified"),
            scored("d", 4),
        ],
    ),
    "assigned, same lead twice": Case(
        history=[created("a", 0)],
        batch=[
            assigned("a", "ana"),
            assigned("b", "bo"),
            assigned("a", "cy"),  # reassigned: the last owner stays
            assigned("c", "di"),
        ],
    ),
    "contacted, same lead twice": Case(
        history=[created("a", 0), contacted("b", 30)],
        batch=[
            contacted("a", 10, owner="ana"),
            contacted("b", 20, owner=None),  # earlier than stored; owner left alone
            contacted("a", 8, owner="bo"),  # earlier than the first
            contacted("a", 10, owner="cy"),  # the same attempt again: counted once
            contacted("c", 1),
        ],
    ),
    "accepted, same lead twice": Case(
        history=[rejected("a", 10), rejected("a", 17), rejected("b", 10), rejected("c", 50)],
        batch=[
            accepted("a", 20),  # after both its rejections: both recycles cancelled
            accepted("b", 12),
            accepted("c", 30, owner=None),  # before its rejection: recycle stays
            accepted("a", 15, owner="bo"),  # earlier: its sql_at, its owner
            accepted("d", 5),
        ],
    ),
    "rejected, same lead twice": Case(
        history=[scored("a", 1), rejected("b", 5, owner="bo")],
        batch=[
            rejected("a", 10, owner="ana"),
            rejected("b", 20, reason="no_authority"),  # not recycled; owner left alone
            rejected("a", 30, reason="no_response"),  # rejected again: a second recycle
            rejected("c", 12, owner="cy"),
            rejected("a", 10, owner="ana"),  # the same rejection again: no new recycle
            rejected("b", 5, owner="bo"),  # already recycled in the history
        ],
    ),
}


@dataclass
class Feedback:
    """feedback's consumer on a fresh database of its own, counting SQL statements."""

    ctx: ServiceContext
    dispatcher: EventDispatcher
    statements: int = 0
    batch_calls: list[int] = field(default_factory=list)

    async def rows(self) -> dict[str, list[Any]]:
        """Every row of feedback's tables and of the outbox (without its event ids and
        times, which differ between two runs of the same events)."""
        found: dict[str, list[Any]] = {}
        async with self.ctx.db.engine.connect() as conn:
            for model in TABLES:
                table = model.__table__
                query = select(table).order_by(*table.primary_key.columns)  # type: ignore[attr-defined]
                found[model.__tablename__] = [tuple(r) for r in await conn.execute(query)]
            published = select(outbox.c.topic, outbox.c.key, outbox.c.payload)
            found["outbox"] = [
                tuple(r) for r in await conn.execute(published.order_by(outbox.c.id))
            ]
        # The times the recycle worker was told to look at: its only effect besides rows.
        found["recycle wake-ups"] = sorted(self.ctx.extras["recycle_worker"]._hints)
        return found


@asynccontextmanager
async def feedback_on(url: str) -> AsyncIterator[Feedback]:
    definition = load_services()["feedback"]
    await upgrade_async(url, definition.migrations)
    settings = Settings(
        database_url=url, bus_url="memory://", contract_path=TEST_CONTRACT, log_level="WARNING"
    )
    ctx = build_context(definition, settings, clock=ManualClock(T0), bus=MemoryBus())
    if definition.setup is not None:
        await definition.setup(ctx)
    calls: list[int] = []
    watched = {m: _counted(h, calls) for m, h in definition.batch_handlers.items()}
    consumer = Feedback(ctx, build_dispatcher(replace(definition, batch_handlers=watched), ctx))
    consumer.batch_calls = calls

    def count(*_: object) -> None:
        consumer.statements += 1

    event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield consumer
    finally:
        await ctx.db.dispose()


def _counted(handler: HandlerFunction, calls: list[int]) -> HandlerFunction:
    """``handler``, noting how many events each call gets (same signature: its extras are
    still injected by name)."""

    @functools.wraps(handler)
    async def run(events: Sequence[CloudEvent[Any]], *args: Any, **extras: Any) -> None:
        calls.append(len(events))
        await handler(events, *args, **extras)

    return run


def messages(data: Sequence[EventData], version: str) -> list[Message]:
    events: list[CloudEvent[Any]] = [
        envelope(d, source="test", time=T0, contract_version=version) for d in data
    ]
    return [Message(e.topic, e.subject, e.to_json()) for e in events]


@pytest.fixture(params=["sqlite", "postgresql"])
async def new_database(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: Callable[[str], Awaitable[str]]
) -> Callable[[str], Awaitable[str]]:
    """Factory of fresh, empty databases of one backend."""

    async def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / name}.db"

    return sqlite if request.param == "sqlite" else pg_database


@pytest.mark.parametrize("case", list(CASES))
async def test_a_batch_leaves_what_its_events_one_by_one_leave(
    case: str, new_database: Callable[[str], Awaitable[str]]
) -> None:
    history, batch = CASES[case].history, CASES[case].batch
    async with (
        feedback_on(await new_database("together")) as together,
        feedback_on(await new_database("in_turn")) as in_turn,
    ):
        version = together.ctx.contracts.current().version
        for consumer in (together, in_turn):
            for message in messages(history, version):
                await consumer.dispatcher(message)
        before = together.statements, in_turn.statements

        batch_messages = messages(batch, version)
        await together.dispatcher.handle_batch(batch_messages)
        for message in batch_messages:
            await in_turn.dispatcher(message)

        assert together.batch_calls == [len(batch)]  # the batch handler took them all
        assert in_turn.batch_calls == []
        assert await together.rows() == await in_turn.rows()
        assert together.statements - before[0] < in_turn.statements - before[1]
