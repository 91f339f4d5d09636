"""The event dispatcher's batches: one partition's ready events in one transaction, each
event's effect once, and one by one again when anything in the batch fails. Real SQLite and
PostgreSQL, the real memory bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, select
from sqlalchemy.orm import registry

from leadpact.bus import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.db import Database
from leadpact.events import CloudEvent, LeadActivity, LeadContacted, envelope
from leadpact.messaging import UnitOfWork, inbox, outbox
from leadpact.metrics import ServiceMetrics
from tests.fixtures.waiting import eventually

NOW = datetime(2026, 11, 2, 10, tzinfo=UTC)
CONSUMER = "leadpact-test"
TOPIC = LeadContacted.topic

EFFECTS = MetaData()
effects = Table(
    "effects",
    EFFECTS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("lead_id", String(64), nullable=False),
    Column("partition", Integer),
)


class Effect:
    """An ``effects`` row as an ORM object: what a handler writing through the ORM adds."""

    event_id: str
    lead_id: str


registry().map_imperatively(Effect, effects)


@dataclass
class Consumer:
    db: Database
    metrics: ServiceMetrics
    dispatcher: EventDispatcher
    commits: list[int] = field(default_factory=list)
    seen_in_session: list[Any] = field(default_factory=list)
    batch_calls: list[list[str]] = field(default_factory=list)

    async def count(self, table: Table) -> int:
        async with self.db.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())

    async def effect_ids(self) -> list[str]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(effects.c.event_id).order_by(effects.c.id))
            return [r[0] for r in rows]

    def counted(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"topic": TOPIC})
        return value or 0.0


Handler = Callable[[CloudEvent[Any], UnitOfWork, ManualClock], Awaitable[None]]


TABLES = (EFFECTS,)  # the conftest's `database` of each dialect creates them


def consumer_on(db: Database, *extra: Handler, batch: bool = False) -> Consumer:
    """A dispatcher whose handler records one row per event (and emits one event); a lead
    named ``poison`` makes it fail; ``extra`` handlers run after it. With ``batch`` the topic
    also has a batch handler doing the same for all its events in one insert."""
    clock, metrics = ManualClock(NOW), ServiceMetrics("test")
    holder: list[Consumer] = []

    async def record(event: CloudEvent[Any], uow: UnitOfWork, clock: ManualClock) -> None:
        holder[0].seen_in_session.append(
            (len(uow.session.identity_map), dict(uow.session.info), uow.partition_of(event.id))
        )
        uow.session.info["touched by"] = event.id
        if event.data.lead_id == "poison":
            raise RuntimeError("this lead cannot be handled")
        await uow.session.execute(
            effects.insert(),
            {
                "event_id": event.id,
                "lead_id": event.data.lead_id,
                "partition": uow.partition_of(event.id),
            },
        )
        uow.emit(LeadActivity(lead_id=event.data.lead_id, activity="called", occurred_at=NOW))
        for handler in extra:
            await handler(event, uow, clock)

    async def record_all(
        events: Sequence[CloudEvent[Any]], uow: UnitOfWork, clock: ManualClock
    ) -> None:
        holder[0].batch_calls.append([e.id for e in events])
        if any(e.data.lead_id == "poison" for e in events):
            raise RuntimeError("this batch cannot be handled")
        rows = [
            {"event_id": e.id, "lead_id": e.data.lead_id, "partition": uow.partition_of(e.id)}
            for e in events
        ]
        await uow.session.execute(effects.insert(), rows)
        for e in events:
            uow.emit(LeadActivity(lead_id=e.data.lead_id, activity="called", occurred_at=NOW))

    dispatcher = EventDispatcher(
        CONSUMER,
        {LeadContacted: record},  # type: ignore[dict-item]
        lambda: UnitOfWork(db, clock, "test"),
        clock,
        metrics,
        retries=2,
        backoff=0.01,
        batch_handlers={LeadContacted: record_all} if batch else None,  # type: ignore[dict-item]
    )
    consumer = Consumer(db, metrics, dispatcher)
    holder.append(consumer)
    event.listen(db.engine.sync_engine, "commit", lambda conn: consumer.commits.append(1))
    return consumer


def contacted(lead_id: str) -> CloudEvent[Any]:
    data = LeadContacted(lead_id=lead_id, channel="phone", outcome="connected", contacted_at=NOW)
    return envelope(data, source="test", time=NOW)


def messages(events: list[CloudEvent[Any]], partition: int = 2) -> list[Message]:
    return [
        Message(TOPIC, e.subject or "", e.to_json(), partition, offset)
        for offset, e in enumerate(events)
    ]


async def test_a_batch_is_one_transaction_with_every_effect_once(database: Database) -> None:
    consumer = consumer_on(database)
    events = [contacted(f"lead-{n}") for n in range(5)]
    await consumer.dispatcher.handle_batch(messages(events))

    assert await consumer.effect_ids() == [e.id for e in events]
    assert await consumer.count(inbox) == 5
    assert await consumer.count(outbox) == 5
    assert len(consumer.commits) == 1
    assert consumer.counted("leadpact_events_consumed_total") == 5
    assert consumer.counted("leadpact_event_handling_seconds_count") == 5
    assert consumer.counted("leadpact_event_batches_failed_total") == 0
    # Each handler started as in a session of its own, with its message's partition.
    assert consumer.seen_in_session == [(0, {}, 2)] * 5


async def test_what_a_handler_adds_through_the_orm_is_kept_for_every_event_of_a_batch(
    database: Database,
) -> None:
    """Between two events of a batch the session is emptied: what a handler added through
    the ORM must be flushed first, or it is lost without an error."""

    async def through_orm(event: CloudEvent[Any], uow: UnitOfWork, clock: ManualClock) -> None:
        effect = Effect()
        effect.event_id, effect.lead_id = f"orm-{event.id}", event.data.lead_id
        uow.session.add(effect)

    consumer = consumer_on(database, through_orm)
    events = [contacted(f"lead-{n}") for n in range(3)]
    await consumer.dispatcher.handle_batch(messages(events))

    written = await consumer.effect_ids()
    assert [i for i in written if i.startswith("orm-")] == [f"orm-{e.id}" for e in events]


async def test_a_batch_claims_its_events_with_one_statement(database: Database) -> None:
    consumer = consumer_on(database)
    statements: list[str] = []
    event.listen(
        database.engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, sql, params, context, many: statements.append(sql),
    )
    await consumer.dispatcher.handle_batch(messages([contacted(f"lead-{n}") for n in range(5)]))

    assert sum("INSERT INTO inbox" in sql for sql in statements) == 1
    assert await consumer.count(inbox) == 5


async def test_a_duplicate_in_the_batch_and_an_event_handled_before_are_skipped(
    database: Database,
) -> None:
    consumer = consumer_on(database)
    before, first, second = contacted("lead-0"), contacted("lead-1"), contacted("lead-2")
    await consumer.dispatcher(messages([before])[0])
    await consumer.dispatcher.handle_batch(messages([first, second, first, before]))

    assert await consumer.effect_ids() == [before.id, first.id, second.id]
    assert await consumer.count(outbox) == 3
    assert consumer.counted("leadpact_events_duplicate_total") == 2
    assert consumer.counted("leadpact_events_consumed_total") == 5


async def test_a_failing_event_leaves_no_trace_of_its_batch(database: Database) -> None:
    consumer = consumer_on(database)
    batch = messages([contacted("lead-1"), contacted("poison"), contacted("lead-3")])
    with pytest.raises(RuntimeError, match="cannot be handled"):
        await consumer.dispatcher.handle_batch(batch)

    assert await consumer.effect_ids() == []
    assert await consumer.count(inbox) == 0
    assert await consumer.count(outbox) == 0
    assert consumer.counted("leadpact_events_consumed_total") == 0
    assert consumer.counted("leadpact_events_failed_total") == 0
    assert consumer.counted("leadpact_event_batches_failed_total") == 1


async def test_a_handler_that_commits_mid_batch_writes_each_emitted_event_once(
    database: Database,
) -> None:
    async def commit_now(event: CloudEvent[Any], uow: UnitOfWork, clock: ManualClock) -> None:
        await uow.commit()

    consumer = consumer_on(database, commit_now)
    events = [contacted(f"lead-{n}") for n in range(4)]
    await consumer.dispatcher.handle_batch(messages(events))

    assert await consumer.effect_ids() == [e.id for e in events]
    assert await consumer.count(outbox) == 4
    assert await consumer.count(inbox) == 4


async def test_through_the_bus_a_poison_event_is_isolated_and_the_others_handled_once(
    database: Database,
) -> None:
    bus = MemoryBus(partitions=1, retries=2)
    consumer = consumer_on(database)
    events = [contacted(f"lead-{n}") for n in range(3)]
    events += [contacted("poison")] + [contacted(f"lead-{n}") for n in range(4, 7)]
    for e in events:
        await bus.publish(TOPIC, e.subject or "", e.to_json())
    member = await bus.subscribe(CONSUMER, [TOPIC], consumer.dispatcher)
    try:
        await eventually(lambda: len(bus.messages(TOPIC + ".dlq")) == 1, 20)
        await eventually(lambda: sum(member.lag().values()) == 0, 20)
        fine = [e.id for e in events if e.subject != "poison"]
        assert await consumer.effect_ids() == fine
        assert await consumer.count(outbox) == 6
        assert consumer.counted("leadpact_events_consumed_total") == 6
        assert consumer.counted("leadpact_events_dead_lettered_total") == 1
        parked = bus.messages(TOPIC + ".dlq")[0]
        assert parked.value == events[3].to_json()
    finally:
        await bus.stop()


async def test_a_batch_handler_takes_the_batch_in_one_call_without_duplicates(
    database: Database,
) -> None:
    consumer = consumer_on(database, batch=True)
    before, first, second, third = (contacted(f"lead-{n}") for n in range(4))
    await consumer.dispatcher(messages([before])[0])
    await consumer.dispatcher.handle_batch(messages([first, second, first, before, third]))

    assert consumer.batch_calls == [[first.id, second.id, third.id]]
    assert await consumer.effect_ids() == [before.id, first.id, second.id, third.id]
    assert await consumer.count(outbox) == 4
    assert len(consumer.commits) == 2
    assert consumer.counted("leadpact_events_consumed_total") == 6
    assert consumer.counted("leadpact_events_duplicate_total") == 2
    async with database.engine.connect() as conn:
        partitions = (await conn.execute(select(effects.c.partition))).scalars().all()
    assert set(partitions) == {2}


async def test_a_failing_batch_handler_falls_back_to_each_event_through_the_bus(
    database: Database,
) -> None:
    bus = MemoryBus(partitions=1, retries=2)
    consumer = consumer_on(database, batch=True)
    events = [contacted("lead-1"), contacted("poison"), contacted("lead-3")]
    for e in events:
        await bus.publish(TOPIC, e.subject or "", e.to_json())
    member = await bus.subscribe(CONSUMER, [TOPIC], consumer.dispatcher)
    try:
        await eventually(lambda: len(bus.messages(TOPIC + ".dlq")) == 1, 20)
        await eventually(lambda: sum(member.lag().values()) == 0, 20)
        assert await consumer.effect_ids() == [events[0].id, events[2].id]
        assert await consumer.count(outbox) == 2
        assert consumer.counted("leadpact_event_batches_failed_total") >= 1
    finally:
        await bus.stop()


async def test_a_round_of_several_partitions_is_one_transaction_each_batch_in_its_partition(
    database: Database,
) -> None:
    consumer = consumer_on(database)
    first = [contacted(f"lead-{n}") for n in range(3)]
    second = [contacted(f"lead-{n}") for n in range(3, 5)]
    await consumer.dispatcher.handle_round([messages(first, 1), messages(second, 4)])

    assert await consumer.effect_ids() == [e.id for e in first + second]
    assert await consumer.count(inbox) == 5
    assert await consumer.count(outbox) == 5
    assert len(consumer.commits) == 1
    assert consumer.counted("leadpact_events_consumed_total") == 5
    assert consumer.seen_in_session == [(0, {}, 1)] * 3 + [(0, {}, 4)] * 2


async def test_a_round_gives_a_topics_partitions_one_batch_handler_call_each_event_its_partition(
    database: Database,
) -> None:
    consumer = consumer_on(database, batch=True)
    first = [contacted(f"lead-{n}") for n in range(3)]
    second = [contacted(f"lead-{n}") for n in range(3, 5)]
    await consumer.dispatcher.handle_round([messages(first, 1), messages(second, 4)])

    assert consumer.batch_calls == [[e.id for e in first + second]]
    assert len(consumer.commits) == 1
    async with database.engine.connect() as conn:
        rows = (await conn.execute(select(effects.c.event_id, effects.c.partition))).all()
    assert sorted(rows) == sorted([(e.id, 1) for e in first] + [(e.id, 4) for e in second])


async def test_a_failing_event_leaves_no_trace_of_its_round(database: Database) -> None:
    consumer = consumer_on(database)
    fine = messages([contacted("lead-1"), contacted("lead-2")], 1)
    poisoned = messages([contacted("lead-3"), contacted("poison")], 4)
    with pytest.raises(RuntimeError, match="cannot be handled"):
        await consumer.dispatcher.handle_round([fine, poisoned])

    assert await consumer.effect_ids() == []
    assert await consumer.count(inbox) == 0
    assert await consumer.count(outbox) == 0
    assert consumer.counted("leadpact_events_consumed_total") == 0
    assert consumer.counted("leadpact_event_batches_failed_total") == 1


def test_a_batch_handler_needs_an_event_handler_for_its_topic() -> None:
    async def nothing(events: Sequence[CloudEvent[Any]], uow: UnitOfWork, clock: Any) -> None:
        return None

    with pytest.raises(ValueError, match=LeadActivity.topic):
        EventDispatcher(
            CONSUMER,
            {},
            lambda: None,  # type: ignore[arg-type, return-value]
            ManualClock(NOW),
            ServiceMetrics("test"),
            batch_handlers={LeadActivity: nothing},
        )
