"""The sla-monitor's batch handlers (``lead.scored``, ``lead.created``) have the effect of
the event handler on each event in order: the same events go through a consumer batch
(``EventDispatcher.handle_batch``, which hands them to the batch handler) into one fresh
database and one by one into another, and every row of the service's tables, every emitted
event (in order) and the service's metrics must be equal. Real SQLite and PostgreSQL, the
service wired by its own bootstrap.

The round-robin makes order visible: a lead moved, dropped or doubled in a batch of MQLs
shifts every later owner. The second ``lead.scored`` batch holds the unusual cases the
batch handler routes one by one: the same lead twice, a lead scored again, a contact that
overtook the score, an owner the CRM chose first, a returning customer, a lead that is not
an MQL, and a contract version without routing between two runs."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.events import (
    EventData,
    LeadAssigned,
    LeadContacted,
    LeadCreated,
    LeadScored,
    envelope,
)
from leadpact.messaging import inbox, outbox
from leadpact.migrations import upgrade_async
from leadpact.service import ServiceContext, build_context, build_dispatcher
from leadpact.settings import Settings
from sla_monitor import store
from sla_monitor.app import SERVICE
from sla_monitor.routing import assign
from sla_monitor.routing import store as routing_store
from sla_monitor.routing.domain import LeadFacts
from tests.integration.sla_monitor.test_routing import ROUTING_CONTRACT, VERSION

FAST_CONTRACT = Path(__file__).parents[2] / "fixtures" / "contracts" / "fast.yaml"
NO_ROUTING = "test-fast.1"
T0 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # a Tuesday: lucia, jonas, ana, tom in hours
PARTITION = 2


@dataclass
class Sla:
    """One sla-monitor as its bootstrap wires it, with its own database."""

    ctx: ServiceContext
    dispatcher: EventDispatcher
    statements: list[str]

    async def one_by_one(self, msgs: Sequence[Message]) -> None:
        for msg in msgs:
            await self.dispatcher(msg)

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of the service's tables, the inbox, and the outbox's events."""
        found: dict[str, list[dict[str, Any]]] = {}
        async with self.ctx.db.engine.connect() as conn:
            for table in [*store.Base.metadata.sorted_tables, inbox]:
                query = select(table).order_by(*table.primary_key.columns)
                found[table.name] = [dict(r._mapping) for r in await conn.execute(query)]
            events = await conn.execute(select(outbox.c.payload).order_by(outbox.c.id))
            found["emitted"] = [_without_id(json.loads(payload)) for (payload,) in events]
        return found

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The sla-monitor's own series (deadlines armed, leads assigned, open leads)."""
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in self.ctx.metrics.registry.collect()
            for s in family.samples
            if s.name.startswith(("leadpact_sla_", "leadpact_lead", "leadpact_owner"))
            and not s.name.endswith("_created")
        }


def _without_id(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "id"}  # random per emission


@asynccontextmanager
async def _sla(url: str, contracts: Path) -> AsyncIterator[Sla]:
    await upgrade_async(url, SERVICE.migrations)
    settings = Settings(
        database_url=url, bus_url="memory://", contract_path=contracts, log_level="WARNING"
    )
    ctx = build_context(SERVICE, settings, clock=ManualClock(T0), bus=MemoryBus())
    assert SERVICE.setup is not None
    await SERVICE.setup(ctx)
    statements: list[str] = []
    event.listen(
        ctx.db.engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, sql, *_: statements.append(sql),
    )
    try:
        yield Sla(ctx, build_dispatcher(SERVICE, ctx), statements)
    finally:
        await ctx.db.dispose()


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    """Two versions: the routing contract, and one without routing."""
    folder = tmp_path / "contracts"
    folder.mkdir()
    shutil.copy(ROUTING_CONTRACT, folder / "routing.yaml")
    shutil.copy(FAST_CONTRACT, folder / "fast.yaml")
    return folder


@pytest.fixture
def notify_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    """E-mail and webhook on: every assignment queues notifications (no worker runs)."""
    monkeypatch.setenv("LEADPACT_NOTIFY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LEADPACT_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/hook")


@pytest.fixture(params=["sqlite", "postgresql"])
async def pair(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_database: Callable[[str], Awaitable[str]],
    contracts: Path,
    notify_channels: None,
) -> AsyncIterator[tuple[Sla, Sla]]:
    """Two fresh sla-monitors: one fed consumer batches, one fed the same events singly."""
    if request.param == "sqlite":
        urls = [f"sqlite+aiosqlite:///{tmp_path / name}.db" for name in ("batch", "single")]
    else:
        urls = [await pg_database("sla_batch"), await pg_database("sla_single")]
    async with _sla(urls[0], contracts) as batched, _sla(urls[1], contracts) as single:
        yield batched, single


def _messages(topic: str, *items: tuple[EventData, str]) -> list[Message]:
    msgs = []
    for data, version in items:
        e = envelope(data, source="test", time=T0, contract_version=version)
        msgs.append(Message(topic, e.subject, e.to_json(), partition=PARTITION))
    return msgs


def _created(lead_id: str, country: str, size: int, **extra: Any) -> tuple[EventData, str]:
    data = LeadCreated(lead_id=lead_id, country=country, company_size=size, created_at=T0, **extra)
    return data, VERSION


def _scored(
    lead_id: str, probability: float = 0.5, tier: str = "mql", version: str = VERSION
) -> tuple[EventData, str]:
    data = LeadScored(
        lead_id=lead_id,
        points=70,
        probability=probability,
        tier=tier,  # type: ignore[arg-type]
        source="website",
        scored_at=T0,
    )
    return data, version


async def _feed_both(pair: tuple[Sla, Sla], msgs: Sequence[Message]) -> None:
    """Events that are not under test: handled one by one in both databases alike."""
    for sla in pair:
        await sla.one_by_one(msgs)


async def _compare(pair: tuple[Sla, Sla], batch: Sequence[Message]) -> tuple[int, int]:
    """``batch`` as one consumer batch into the first, one by one into the second: equal
    rows, events and metrics. Returns the statements each took."""
    batched, single = pair
    taken = []
    for sla, handle in ((batched, batched.dispatcher.handle_batch), (single, single.one_by_one)):
        before = len(sla.statements)
        await handle(batch)
        taken.append(len(sla.statements) - before)
    batch_rows, single_rows = await batched.rows(), await single.rows()
    for table, rows in single_rows.items():
        assert batch_rows[table] == rows, table
    assert batched.metrics() == single.metrics()
    return taken[0], taken[1]


async def _first_batch(pair: tuple[Sla, Sla]) -> tuple[int, int]:
    """Fresh MQLs across both teams: rules, the fallback, a member out of hours (nora),
    a member reaching her capacity (ana, 2), a lead with no lead.created yet."""
    await _feed_both(
        pair,
        _messages(
            LeadCreated.topic,
            _created("big-1", "ES", 800),
            _created("big-2", "PT", 300),
            _created("big-3", "ES", 250),
            *[_created(f"smb-{i}", "FR", 20) for i in range(5)],
        ),
    )
    batch = _messages(
        LeadScored.topic,
        _scored("big-1"),
        _scored("smb-0"),
        _scored("hot-1", probability=0.95),
        _scored("smb-1"),
        _scored("big-2"),
        _scored("smb-2"),
        _scored("smb-3"),
        _scored("hot-2", probability=0.92),
        _scored("big-3"),
        _scored("smb-4"),
    )
    return await _compare(pair, batch)


async def test_a_batch_of_fresh_mqls_equals_one_by_one(pair: tuple[Sla, Sla]) -> None:
    batch_statements, single_statements = await _first_batch(pair)
    assert batch_statements < single_statements / 4, "not handled as a batch"
    rows = await pair[0].rows()
    owners = {r["lead_id"]: r["owner"] for r in rows["routing_assignments"]}
    assert len(owners) == 10 and {"lucia", "jonas", "ana", "tom"} <= set(owners.values())
    assert len(rows["sla_deadlines"]) == 30
    assert len(rows["notifications"]) == 20  # e-mail and webhook per assignment
    assert [e["type"] for e in rows["emitted"]] == ["io.leadpact.lead.assigned.v1"] * 10


async def test_a_batch_with_unusual_leads_equals_one_by_one(pair: tuple[Sla, Sla]) -> None:
    await _first_batch(pair)
    # A contact that overtook its lead's score, an owner the CRM chose before routing,
    # and a returning customer whose earlier lead (big-1) has an owner.
    await _feed_both(
        pair,
        _messages(
            LeadContacted.topic,
            (
                LeadContacted(
                    lead_id="early",
                    channel="phone",
                    outcome="connected",
                    owner="tom",
                    contacted_at=T0 + timedelta(minutes=1),
                ),
                VERSION,
            ),
        ),
    )
    crm = envelope(
        LeadAssigned(lead_id="crm", owner="jonas", reason="crm", assigned_at=T0),
        source="crm-sync",
        time=T0,
        contract_version=VERSION,
    )
    await _feed_both(
        pair, [Message(LeadAssigned.topic, crm.subject, crm.to_json(), partition=PARTITION)]
    )
    await _feed_both(
        pair,
        _messages(
            LeadCreated.topic,
            _created("again", "FR", 20),
            _created("back", "ES", 900, existing_customer=True, customer_lead_ids=["big-1"]),
            _created("more-1", "DE", 40),
        ),
    )
    batch = _messages(
        LeadScored.topic,
        _scored("fresh-1"),
        _scored("again"),
        _scored("early"),
        _scored("fresh-2", probability=0.95),
        _scored("again"),  # twice in the batch
        _scored("cold", tier="nurture"),
        _scored("crm"),
        _scored("fresh-4"),
        _scored("plain-1", version=NO_ROUTING),  # a run of another contract version
        _scored("plain-2", version=NO_ROUTING),
        _scored("fresh-5"),
        _scored("back"),
        _scored("more-1"),
        _scored("smb-1"),  # scored again: it has its owner and deadlines
        _scored("fresh-3", probability=0.99),
    )
    await _compare(pair, batch)
    rows = await pair[0].rows()
    owners = {r["lead_id"]: r["owner"] for r in rows["routing_assignments"]}
    assert owners["crm"] == "jonas"
    assert owners["back"] == owners["big-1"]
    assert "plain-1" not in owners and "cold" not in owners
    early = [r for r in rows["sla_deadlines"] if r["lead_id"] == "early"]
    assert {r["clause"]: r["contacted_at"] is not None for r in early}["first_contact"]


async def test_the_statements_of_a_batch_do_not_grow_with_its_leads(
    pair: tuple[Sla, Sla],
) -> None:
    """Runs of fresh MQLs: a fixed number of statements per batch, whatever its size (once
    the team's round-robin rows exist: the first batch creates them)."""
    batched, _ = pair
    await _feed_both(
        pair, _messages(LeadCreated.topic, *[_created(f"n-{i}", "FR", 20) for i in range(22)])
    )
    counts = []
    for start, size in ((0, 2), (2, 4), (6, 16)):
        before = len(batched.statements)
        await batched.dispatcher.handle_batch(
            _messages(LeadScored.topic, *[_scored(f"n-{i}") for i in range(start, start + size)])
        )
        counts.append(len(batched.statements) - before)
    assert counts[1] == counts[2], counts
    async with batched.ctx.db.engine.connect() as conn:
        armed = await conn.execute(text("SELECT count(*) FROM sla_deadlines"))
        assert armed.scalar_one() == 66


async def test_a_batch_of_created_leads_equals_one_by_one(pair: tuple[Sla, Sla]) -> None:
    """Facts of new leads; then the same lead twice (its first facts stand) and a returning
    customer whose account owner is read from an earlier lead's assignment."""
    first = _messages(LeadCreated.topic, *[_created(f"c-{i}", "ES", 10 * i) for i in range(6)])
    batch_statements, single_statements = await _compare(pair, first)
    assert batch_statements < single_statements / 2, "not handled as a batch"
    await _feed_both(pair, _messages(LeadScored.topic, _scored("c-1")))
    second = _messages(
        LeadCreated.topic,
        _created("twice", "PT", 10),
        _created("back", "DE", 70, existing_customer=True, customer_lead_ids=["c-1", "none"]),
        _created("twice", "FR", 900),
        _created("new", "FR", 20, industry="Software"),
    )
    await _compare(pair, second)
    facts = {r["lead_id"]: r for r in (await pair[0].rows())["routing_leads"]}
    assert (facts["twice"]["country"], facts["twice"]["company_size"]) == ("PT", 10)
    owners = {r["lead_id"]: r["owner"] for r in (await pair[0].rows())["routing_assignments"]}
    assert facts["back"]["account_owner"] == owners["c-1"]


async def test_a_run_whose_lead_got_an_owner_meanwhile_is_refused(pair: tuple[Sla, Sla]) -> None:
    """Another consumer assigned a lead of the run after the batch looked (PostgreSQL, two
    instances): the run raises, so the dispatcher rolls the batch back and handles it one
    by one, where the lead's existing owner stands."""
    sla, _ = pair
    contract = sla.ctx.contracts.get(VERSION)
    assert contract.routing is not None
    mqls = [assign.NewMql(lead_id, LeadFacts(), T0) for lead_id in ("free", "taken")]
    async with sla.ctx.uow() as uow:
        await routing_store.insert_assignment(
            uow.session,
            {
                "lead_id": "taken",
                "owner": "jonas",
                "team": "enterprise",
                "rule": None,
                "reason": "crm",
                "contract_version": VERSION,
                "assigned_at": T0,
            },
        )
        with pytest.raises(assign.AssignedMeanwhile, match="taken"):
            await assign.assign_run(
                uow, contract.routing, mqls, VERSION, sla.ctx.extras["routing_metrics"], None
            )
