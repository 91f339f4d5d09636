"""scoring's batch handler for lead.created leaves the same rows, emits the same events (in
the same order) and counts the same metrics as its event handler run on each event in turn.

Each case replays a history one event at a time into two fresh databases, then hands the
same batch to the real dispatcher of each: in one, ``handle_batch`` (the batch handler, in
one call); in the other, one event after the other (the event handler, a transaction each).
Every row of scoring's lead tables (score ids included), the outbox (decoded: type, subject,
data, contract version) and the scores counter must then be equal. With no model (the
rules alone) and with a trained champion (one model call for the batch vs one per lead).
Real SQLite and PostgreSQL, scoring's own migrations, no mock.

The event handler runs the batch logic on its one event, so what these tests guard is the
batch's composition (every lead, in order, each with its own activities and prediction,
earlier leads of the batch seen by later ones); what a single lead's score is, is pinned by
test_scoring_flow, test_postgres, test_erasure and test_learning."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import event, select

from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.events import (
    EventData,
    LeadActivity,
    LeadCreated,
    LeadSource,
    PrivacyErased,
    envelope,
)
from leadpact.messaging import outbox
from leadpact.migrations import upgrade_async
from leadpact.service import ServiceContext, build_context, build_dispatcher
from leadpact.settings import Settings
from scoring import store
from scoring.app import SERVICE
from scoring.domain.rules import lead_fields
from scoring.features import live_record
from scoring.model.calibrated import fit
from scoring.model.schema import Kind, infer_schema
from scoring.predictor import ModelPredictor
from scoring.runtime import ScoringRuntime, runtime
from tests.fixtures.system import TEST_CONTRACT

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TABLES = (store.LeadFeatures, store.ActivityRow, store.ScoreRow)
TITLES = ["Head of Operations", "CEO", "Office Manager", "Intern", "VP Sales", "Buyer"]


def created(lead_id: str, i: int = 0, **fields: Any) -> LeadCreated:
    """A lead whose points and model features vary with ``i``."""
    base: dict[str, Any] = {
        "lead_id": lead_id,
        "email": f"p{i}@acme.example",
        "phone": "+34600000000" if i % 2 else None,
        "company": "Acme",
        "title": TITLES[i % len(TITLES)],
        "company_size": (i * 97) % 600,
        "industry": ["saas", "retail", "finance"][i % 3],
        "country": ["ES", "FR"][i % 2],
        "source": LeadSource(platform=["meta", "typeform", "web"][i % 3]),
        "created_at": T0 + timedelta(minutes=i),
    }
    return LeadCreated.model_validate({**base, **fields})


def viewed(lead_id: str, minutes: int) -> LeadActivity:
    return LeadActivity(
        lead_id=lead_id,
        activity="pricing_page_view",
        occurred_at=T0 - timedelta(minutes=minutes),
    )


@dataclass(frozen=True)
class Case:
    """A history (handled one by one in both databases) and the batch under test."""

    history: Sequence[EventData]
    batch: Sequence[EventData]


CASES = {
    "new leads": Case(
        history=[
            viewed("early", 30),  # activity before its lead.created: counts in its score
            viewed("early", 10),
            created("known", 1),
            PrivacyErased(
                subject_hash="0" * 64, lead_ids=["erased"], erased_at=T0
            ),  # its lead.created: ignored
        ],
        batch=[
            created("a", 1),
            created("early", 2),
            created("free-mail", 3, email="x@gmail.com"),  # disqualified: no model call
            created("known", 4),  # replayed under a new event id: ignored
            created("b", 5, attributes={"plan": "pro"}),
            created("erased", 6),
            created("c", 7, title=None, company_size=None),
            created("d", 8),
        ],
    ),
    "all known": Case(
        history=[created("a", 1), created("b", 2)],
        batch=[created("a", 1), created("b", 3)],
    ),
    "all disqualified": Case(  # no lead for the model: no model call
        history=[],
        batch=[created(f"free-{i}", i, email=f"p{i}@gmail.com") for i in range(3)],
    ),
    "same lead twice": Case(
        history=[viewed("a", 5)],
        batch=[
            created("a", 1),
            created("b", 2),
            created("a", 3, title="CEO"),  # a producer retry with other data: ignored
            created("c", 4),
        ],
    ),
}


def champion(scoring: ScoringRuntime) -> ModelPredictor:
    """A small model trained as the retrainer would (features of ``scoring.features``)."""
    settings = scoring.settings
    kinds: dict[str, Kind] = {name: kind for name, kind in settings.features.items()}  # type: ignore[misc]
    for kind in settings.activity_types:
        kinds[f"activity:{kind}"] = "numeric"
        kinds[f"days_since:{kind}"] = "numeric"
    records = []
    for i in range(240):
        raw = created(f"t{i}", i).model_dump(mode="json", exclude={"lead_id", "source"})
        records.append(
            live_record(
                {**lead_fields(raw), "source": ["meta", "typeform", "web"][i % 3]},
                [],
                activity_kinds=settings.activity_types,
                half_life=settings.activity_half_life,
                free_mail=["gmail.com"],
                now=T0,
            )
        )
    rng = np.random.default_rng(11)
    likely = {"CEO": 0.8, "VP Sales": 0.6, "Head of Operations": 0.5}
    y = np.array([int(rng.random() < likely.get(str(r["title"]), 0.1)) for r in records])
    schema = infer_schema(records, list(kinds), kinds)
    model = fit(schema, schema.encode(records), y)
    model.version = "test-model"
    return ModelPredictor(model)


@dataclass
class Scoring:
    """scoring's consumer on a fresh database of its own, counting SQL statements."""

    ctx: ServiceContext
    dispatcher: EventDispatcher
    statements: int = 0

    async def state(self) -> dict[str, list[Any]]:
        """Every row of scoring's lead tables, the outbox decoded (without event ids and
        times, which differ between two runs), and the scores counted per tier."""
        found: dict[str, list[Any]] = {}
        async with self.ctx.db.engine.connect() as conn:
            for model in TABLES:
                table = model.__table__
                query = select(table).order_by(*table.primary_key.columns)  # type: ignore[attr-defined]
                found[model.__tablename__] = [tuple(r) for r in await conn.execute(query)]
            payloads = await conn.execute(select(outbox.c.payload).order_by(outbox.c.id))
            found["outbox"] = [_published(orjson.loads(p)) for (p,) in payloads]
        found["counted"] = [
            (tier, runtime(self.ctx).leads_scored.labels(tier)._value.get())
            for tier in ("mql", "nurture", "disqualified")
        ]
        return found


def _published(doc: dict[str, Any]) -> tuple[Any, ...]:
    return doc["type"], doc["subject"], doc["data"], doc.get("contractversion")


@asynccontextmanager
async def scoring_on(url: str, trained: bool) -> AsyncIterator[Scoring]:
    await upgrade_async(url, SERVICE.migrations)
    settings = Settings(database_url=url, contract_path=TEST_CONTRACT, log_json=False)
    ctx = build_context(SERVICE, settings, clock=ManualClock(T0), bus=MemoryBus())
    if SERVICE.setup is not None:
        await SERVICE.setup(ctx)
    if trained:
        runtime(ctx).predictor = _champion(runtime(ctx))
    found = Scoring(ctx, build_dispatcher(SERVICE, ctx))

    def count(*_: Any) -> None:
        found.statements += 1

    event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield found
    finally:
        await ctx.db.dispose()


_models: dict[str, ModelPredictor] = {}


def _champion(scoring: ScoringRuntime) -> ModelPredictor:
    """One model for the whole module (training takes a second)."""
    if "model" not in _models:
        _models["model"] = champion(scoring)
    return _models["model"]


def messages(events: Sequence[EventData]) -> list[Message]:
    made = [envelope(data, source="test", time=T0, contract_version="test") for data in events]
    return [Message(e.topic, e.subject, e.to_json()) for e in made]


Database = Callable[[], Awaitable[str]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: Callable[[str], Awaitable[str]]
) -> Database:
    """Factory of fresh, empty databases of the parametrized kind."""
    made: list[str] = []

    async def sqlite_file() -> str:
        made.append(f"scoring-{len(made)}")
        return f"sqlite+aiosqlite:///{tmp_path / made[-1]}.db"

    if request.param == "sqlite":
        return sqlite_file
    return lambda: pg_database("scoring")


async def run_case(
    database: Database, case: Case, trained: bool
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], int]:
    """(state after the batch path, after the one-by-one path, statements of the batch)."""
    batch = messages(case.batch)
    states = []
    async with scoring_on(await database(), trained) as together:
        for msg in messages(case.history):
            await together.dispatcher(msg)
        before = together.statements
        await together.dispatcher.handle_batch(batch)
        batch_statements = together.statements - before
        states.append(await together.state())
    async with scoring_on(await database(), trained) as in_turn:
        for msg in messages(case.history):
            await in_turn.dispatcher(msg)
        for msg in batch:
            await in_turn.dispatcher(msg)
        states.append(await in_turn.state())
    return states[0], states[1], batch_statements


@pytest.mark.parametrize("trained", [False, True], ids=["rules", "model"])
@pytest.mark.parametrize("name", list(CASES))
async def test_batch_equals_one_by_one(database: Database, name: str, trained: bool) -> None:
    together, in_turn, _ = await run_case(database, CASES[name], trained)
    assert together == in_turn
    assert together["outbox"], "the case emits lead.scored"


async def test_a_batch_of_new_leads_costs_five_statements(database: Database) -> None:
    """claim, new leads, their activities, their scores, outbox: one each for the batch."""
    case = Case(history=[], batch=[created(f"n{i}", i) for i in range(8)])
    together, _, statements = await run_case(database, case, trained=True)
    assert len(together["scores"]) == 8
    assert statements == 5
