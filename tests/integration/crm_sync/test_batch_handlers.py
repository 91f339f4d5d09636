"""crm-sync's batch handler for ``lead.created`` against its event handler: the same events
go one by one (``EventDispatcher.__call__``) into one fresh database and as one consumer
batch (``handle_batch`` → ``on_leads_created``) into another, after the same history; the
rows, the emitted events (types, subjects, data, order) and the match metrics must be equal.

Record ids come from a counter in both runs (``crm_sync.records`` draws them from
``uuid.uuid4``), so the rows compare as they are, and ties between candidates, which the
candidate order breaks by id, fall the same way when both paths order alike."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text

from crm_sync import records
from crm_sync.app import SERVICE
from crm_sync.operations import erase_subject
from crm_sync.runtime import runtime
from leadpact.bus.base import DeadLetter, Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.contract import ContractBook
from leadpact.events import EventData, LeadContacted, LeadCreated, envelope
from leadpact.migrations import upgrade_async
from leadpact.service import ServiceContext, build_context, build_dispatcher
from leadpact.settings import Settings
from tests.fixtures.system import TEST_CONTRACT

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TABLES = {
    "customers": "id",
    "customer_leads": "lead_id",
    "source_records": "ref",
    "customer_attributes": "id",
    "match_keys": "customer_id, key",
    "conflicts": "customer_id, field",
    "merges": "id",
    "reviews": "id",
    "timeline": "event_id",
    "sync_log": "id",
    "inbox": "consumer, event_id",
}


def lead(n: int, first: str, last: str, company: str, **extra: Any) -> LeadCreated:
    """Lead ``n``: its own email and phone unless given."""
    fields: dict[str, Any] = {
        "email": f"person{n}@mail.example",
        "phone": f"+34 612 00{n:04d}",
        "first_name": first,
        "last_name": last,
        "company": company,
        "title": "Head of Operations",
        "created_at": NOW + timedelta(minutes=n),
        **extra,
    }
    return LeadCreated(lead_id=f"L{n}", **fields)


# The table holds these before the batch: blocking partners and sort-key neighbours of the
# batch's leads, a placeholder (an activity that overtook its lead.created), an erased one.
HISTORY: list[EventData] = [
    lead(1, "Ana", "García López", "Acme Robotics"),
    lead(2, "Ana", "García López", "Acme Robotics S.L."),  # a tie with L1 for the same name
    lead(3, "Luis", "Martín", "Globex"),
    lead(4, "Marta", "Ruiz", "Initech"),
    lead(5, "Ana", "Garcia", "Acme"),
    lead(6, "Erased", "Person", "Hooli"),
    LeadContacted(
        lead_id="L40", channel="phone", outcome="connected", owner="rep", contacted_at=NOW
    ),
]

# Plain new leads: partners in the table and earlier in the batch, equal names (ties), no
# sort key, and one whose only candidates are records made earlier in the batch, found as
# sort-key neighbours.
COMMON: list[EventData] = [
    lead(10, "Ana", "García López", "Acme Robotics"),
    lead(11, "Luis", "Martin", "Globex Corp"),
    lead(12, "Zoe", "Zapata", "Vandelay"),
    lead(13, "Zoe", "Zapata", "Vandelay Industries"),
    lead(14, "Ana", "García López", "Acme Robotics"),
    lead(15, "Marta", "Ruíz", "Initech"),
    lead(16, "Zoe", "Zapata", "Vandelay"),
    lead(17, "", "", "", email="nobody17@mail.example"),
    lead(18, "Zoa", "Zapatas", "Vandelay"),
    lead(19, "Ana", "Garcia", "Acme"),
    # no blocking key in common with anyone: only the sort-key neighbours made above
    lead(30, "Zoe", "Zapata Ruiz", "The Vandelay"),
]

# Leads the batch path hands to the event handler: the same lead twice, an email held by an
# earlier lead of the batch, a phone held in the table, a placeholder's lead, an erased
# person's lead again; common leads between them start new rounds.
UNUSUAL: list[EventData] = [
    lead(20, "Ana", "García López", "Acme Robotics"),
    lead(20, "Ana", "García López", "Acme Robotics"),
    lead(21, "Hugo", "Díaz", "Umbrella"),
    lead(22, "Hugo", "Diaz", "Umbrella GmbH", email="person21@mail.example"),
    lead(23, "Sara", "Gómez", "Hooli", phone="+34 612 000003"),
    lead(24, "Zoe", "Zapata", "Vandelay"),
    lead(40, "Pablo", "Pérez", "Globex"),
    lead(6, "Erased", "Person", "Hooli"),
    lead(25, "Ana", "García López", "Acme Robotics"),
]


@dataclass
class Service:
    ctx: ServiceContext
    statements: list[str]

    async def one_by_one(self, messages: Sequence[Message]) -> None:
        dispatcher = build_dispatcher(SERVICE, self.ctx)
        for message in messages:
            await dispatcher(message)

    async def in_one_batch(self, messages: Sequence[Message]) -> None:
        await build_dispatcher(SERVICE, self.ctx).handle_batch(messages)


class CountedIds:
    """``uuid.uuid4`` for ``crm_sync.records``: 1, 2, 3… as UUIDs."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=next(self._next))


@contextlib.contextmanager
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(records, "uuid", CountedIds())
        yield


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str], Awaitable[str]]:
    """A factory of empty databases of the parametrised backend."""
    if request.param == "sqlite":

        async def sqlite(name: str) -> str:
            return f"sqlite+aiosqlite:///{tmp_path}/{name}.db"

        return sqlite
    pg_database: Callable[[str], Awaitable[str]] = request.getfixturevalue("pg_database")
    return pg_database


@contextlib.asynccontextmanager
async def service(url: str) -> AsyncIterator[Service]:
    await upgrade_async(url, SERVICE.migrations)
    settings = Settings(database_url=url, bus_url="memory://", contract_path=TEST_CONTRACT)
    ctx = build_context(SERVICE, settings, clock=ManualClock(NOW), bus=MemoryBus())
    assert SERVICE.setup is not None
    await SERVICE.setup(ctx)
    statements: list[str] = []
    sa_event.listen(
        ctx.db.engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, sql, *_: statements.append(sql),
    )
    try:
        yield Service(ctx, statements)
    finally:
        await ctx.db.dispose()


def messages(events: Sequence[EventData], version: str) -> list[Message]:
    made = [envelope(e, source="test", time=NOW, contract_version=version) for e in events]
    return [Message(e.topic, e.subject, e.to_json()) for e in made]


async def state(ctx: ServiceContext) -> dict[str, Any]:
    """Every row of crm-sync's tables, the emitted events and the match metrics."""
    found: dict[str, Any] = {}
    async with ctx.db.engine.connect() as conn:
        for table, order in TABLES.items():
            rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
            found[table] = [_plain(dict(row._mapping)) for row in rows]
        query = text("SELECT topic, key, payload FROM outbox ORDER BY id")
        outbox = list(await conn.execute(query))
        found["emitted"] = [_event(row.topic, row.key, row.payload) for row in outbox]
    # A push names the change it carries by its event id (random): by its place instead.
    change = {orjson.loads(row.payload)["id"]: f"event {n}" for n, row in enumerate(outbox)}
    for push in found["sync_log"]:
        push["idempotency_key"] = change[push["idempotency_key"]]
        if "change_id" in push["payload"]:  # (an erased person's push says only that)
            push["payload"]["change_id"] = change[push["payload"]["change_id"]]
    registry = ctx.metrics.registry
    found["metrics"] = sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for metric in registry.collect()
        if metric.name in ("leadpact_crm_match_decisions", "leadpact_crm_merges")
        for s in metric.samples
        if s.name.endswith("_total")
    )
    return found


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Rows as both backends give them back (SQLite: naive UTC datetimes, JSON as text)."""
    plain = {}
    for key, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        elif isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(value)
        plain[key] = value
    return plain


def _event(topic: str, key: str, payload: bytes) -> tuple[str, str, str, Any, Any]:
    event = orjson.loads(payload)
    return topic, key, event["type"], event.get("subject"), event["data"]


async def both_ways(
    fresh_database: Callable[[str], Awaitable[str]],
    monkeypatch: pytest.MonkeyPatch,
    batch: Sequence[EventData],
    *,
    repeat: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Service]:
    """The history one by one in two fresh databases, then ``batch`` one by one in the first
    and as one consumer batch in the second (``repeat``: the message at that index twice,
    as a bus redelivery would). Returns both states and the batch run's service."""
    version = ContractBook.load(TEST_CONTRACT).current().version
    history, these = messages(HISTORY, version), messages(batch, version)
    if repeat is not None:
        these.insert(repeat, these[repeat])
    results = []
    for name, batched in (("one_by_one", False), ("batch", True)):
        url = await fresh_database(f"crm_{name}")
        with counted_ids(monkeypatch):
            async with service(url) as crm:
                await crm.one_by_one(history)
                await erase_subject(crm.ctx, runtime(crm.ctx), "person6@mail.example")
                crm.statements.clear()
                await (crm.in_one_batch(these) if batched else crm.one_by_one(these))
                results.append((await state(crm.ctx), crm))
    (one_by_one, _), (batched_state, batch_run) = results
    return one_by_one, batched_state, batch_run


def customer_inserts(statements: Sequence[str]) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith("INSERT INTO CUSTOMERS "))


@pytest.mark.parametrize(
    "settings",
    [
        {},
        # few candidates: the limit on blocking partners cuts through table and batch alike
        {"match_candidates": "2", "match_window": "1"},
        # every change queued for a push to the CRM (the push worker is not running)
        {"crm_push_url": "http://127.0.0.1:9/customers"},
    ],
    ids=["defaults", "two_candidates_window_1", "sync_target"],
)
async def test_a_batch_of_new_leads_equals_them_one_by_one(
    fresh_database: Callable[[str], Awaitable[str]],
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(f"LEADPACT_CRM_SYNC_{name.upper()}", value)
    one_by_one, batched, batch_run = await both_ways(fresh_database, monkeypatch, COMMON)
    assert batched == one_by_one
    assert len(batched["reviews"]) >= 6  # the batch's leads found candidates, ties included
    assert bool(batched["sync_log"]) == ("crm_push_url" in settings)
    # the batch path ran: one insert of every new customer
    assert customer_inserts(batch_run.statements) == 1


def crowd(first: int, count: int) -> list[EventData]:
    """``count`` leads from a few names and companies: many partners, neighbours and ties."""
    names = [("Ana", "García"), ("Ana", "Garcia"), ("Luis", "Martín"), ("Zoe", "Zapata")]
    companies = ["Acme Robotics", "Acme", "Globex", "Vandelay"]
    return [
        lead(n, *names[n % 4], companies[n // 4 % 4], country=("ES", "PT")[n // 16 % 2])
        for n in range(first, first + count)
    ]


async def test_a_batch_longer_than_a_round_equals_it_one_by_one(
    fresh_database: Callable[[str], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More leads than one round takes (``lead_batches.ROUND``): the second round reads
    the records the first one wrote."""
    one_by_one, batched, batch_run = await both_ways(fresh_database, monkeypatch, crowd(100, 70))
    assert batched == one_by_one
    assert customer_inserts(batch_run.statements) == 2


@pytest.mark.parametrize("auto_merge", ["false", "true"])
async def test_unusual_leads_in_a_batch_go_one_by_one_with_the_same_effect(
    fresh_database: Callable[[str], Awaitable[str]],
    monkeypatch: pytest.MonkeyPatch,
    auto_merge: str,
) -> None:
    """The same lead twice, a redelivered event, keys held in the table or by an earlier
    lead of the batch, a placeholder's and an erased person's lead, and (``auto_merge``)
    leads that merge with their best candidate."""
    monkeypatch.setenv("LEADPACT_CRM_SYNC_MATCH_AUTO_MERGE_LEADS", auto_merge)
    one_by_one, batched, batch_run = await both_ways(fresh_database, monkeypatch, UNUSUAL, repeat=2)
    assert batched == one_by_one
    if auto_merge == "true":
        assert batched["merges"]
    # common leads between the unusual ones were still written together
    assert customer_inserts(batch_run.statements) < len(UNUSUAL)


async def test_a_batch_that_rolls_back_and_goes_one_by_one_counts_each_decision_once(
    tmp_path: Path,
) -> None:
    """The batch decides "new" for every lead, then its write fails (the table refuses one
    lead's link); one by one, two leads commit and the third never does. Only the two
    committed decisions are counted."""
    version = ContractBook.load(TEST_CONTRACT).current().version
    batch = messages([lead(50, "Ana", "Ruiz", "Acme"), lead(51, "Luis", "Gil", "Globex")], version)
    batch += messages([lead(52, "Zoe", "Paz", "Vandelay")], version)
    async with service(f"sqlite+aiosqlite:///{tmp_path}/crm.db") as crm:
        async with crm.ctx.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_l52 BEFORE INSERT ON customer_leads "
                    "WHEN NEW.lead_id = 'L52' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        dispatcher = build_dispatcher(SERVICE, crm.ctx)
        with pytest.raises(Exception, match="refused"):
            await dispatcher.handle_batch(batch)
        for message in batch:  # what the bus does after a failed batch
            with contextlib.suppress(DeadLetter):
                await dispatcher(message)
        found = await state(crm.ctx)

    assert [row["lead_id"] for row in found["customer_leads"]] == ["L50", "L51"]
    assert ("leadpact_crm_match_decisions_total", (("decision", "new"),), 2.0) in found["metrics"]
