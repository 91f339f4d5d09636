"""feedback's tables (SQLite and PostgreSQL from the same models) and the queries on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    Date,
    Index,
    Integer,
    Numeric,
    Row,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from feedback.domain.erasure import erased_event_data
from feedback.domain.funnel import LeadFacts, Spend
from leadpact.db import (
    OnConflict,
    UtcDateTime,
    core_connection,
    core_execute,
    dialect_insert,
    dialect_name,
    insert_for,
    insert_or_skip,
)
from leadpact.messaging import rewrite_pending_events

PENDING, DONE, CANCELLED = "pending", "done", "cancelled"
MONEY = Numeric(14, 2)


class Base(DeclarativeBase):
    pass


class LeadRow(Base):
    """One lead's funnel facts, folded from the events feedback consumes."""

    __tablename__ = "fb_leads"
    __table_args__ = (Index("ix_fb_leads_mql_at", "mql_at"), Index("ix_fb_leads_won_at", "won_at"))

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    source: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    mql_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    points: Mapped[int | None] = mapped_column(Integer)
    contract_version: Mapped[str | None] = mapped_column(String(100))
    first_contact_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sql_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rejected_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reject_reason: Mapped[str | None] = mapped_column(String(64))
    won_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lost_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    amount: Mapped[Decimal | None] = mapped_column(MONEY)
    currency: Mapped[str | None] = mapped_column(String(3))
    recycled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BreachRow(Base):
    """An SLA clause breached for a lead (``sla.breached``), once per clause."""

    __tablename__ = "fb_breaches"
    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    clause: Mapped[str] = mapped_column(String(32), primary_key=True)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AttemptRow(Base):
    """One contact attempt: the ledger behind the ``no_response`` rule."""

    __tablename__ = "fb_attempts"
    __table_args__ = (UniqueConstraint("lead_id", "channel", "contacted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    contacted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RecycleRow(Base):
    """A rejected lead going back to nurture at ``due_at``; pending → done once."""

    __tablename__ = "fb_recycles"
    __table_args__ = (
        UniqueConstraint("lead_id", "rejected_at"),
        Index("ix_fb_recycles_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    rejected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    contract_version: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SpendRow(Base):
    """Ad spend of one day, source and campaign (the CAC numerator)."""

    __tablename__ = "fb_spend"
    __table_args__ = (UniqueConstraint("day", "source", "campaign"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(100))
    campaign: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))


class TouchRow(Base):
    """A marketing touchpoint of a lead (for attribution): its creation, its activities."""

    __tablename__ = "fb_touchpoints"
    __table_args__ = (UniqueConstraint("lead_id", "at", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(200))


class CrmLinkRow(Base):
    """A CRM object (HubSpot contact or deal id, ...) known to be this lead."""

    __tablename__ = "fb_crm_links"
    crm: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal | None] = mapped_column(MONEY)


# ---- helpers -----------------------------------------------------------------------------


def _earliest(column: Any, value: Any) -> ColumnElement[Any]:
    return case((column.is_(None), value), (column > value, value), else_=column)


_LEADS = cast(Table, LeadRow.__table__)
_BREACHES = cast(Table, BreachRow.__table__)
_ATTEMPTS = cast(Table, AttemptRow.__table__)
_RECYCLES = cast(Table, RecycleRow.__table__)
_TOUCHES = cast(Table, TouchRow.__table__)


# Statements of the event path, built once (per dialect, per shape) and executed with
# parameters: building ``insert(...).values(...)`` and ``ins.excluded[...]`` for every
# event (``excluded`` rebuilds its column collection each time) was most of a funnel
# event's CPU time; a constant statement's compiled SQL is also found in the cache at
# once (its cache key is memoised).


@cache
def _touch_statement(dialect: str, shape: frozenset[tuple[str, bool]]) -> Any:
    """The upsert of ``touch_lead`` for one set of columns: ``shape`` holds each given
    column with whether it keeps the earliest value. The INSERT's columns are those of
    the parameters it runs with (``lead_id`` and the given ones)."""
    ins = dialect_insert(dialect)(_LEADS)
    if not shape:
        return ins.on_conflict_do_nothing()
    sets = {
        name: _earliest(_LEADS.c[name], ins.excluded[name]) if earliest else ins.excluded[name]
        for name, earliest in sorted(shape)
    }
    return ins.on_conflict_do_update(index_elements=[_LEADS.c.lead_id], set_=sets)


@cache
def _touch_all(shape: tuple[tuple[str, bool], ...]) -> OnConflict:
    """The conflict clause of ``touch_leads``' upsert: every column of ``shape`` is in
    every row, and a ``None`` leaves the stored fact alone in the statement itself
    (``COALESCE`` for plain columns; the earliest rule already keeps the stored time
    against ``NULL``) — what ``touch_lead`` gets by leaving the column out, which one
    statement for many rows cannot do."""

    def on_conflict(ins: Any) -> Any:
        sets = {
            name: _earliest(_LEADS.c[name], ins.excluded[name])
            if earliest
            else func.coalesce(ins.excluded[name], _LEADS.c[name])
            for name, earliest in shape
        }
        if not sets:
            return ins.on_conflict_do_nothing()
        return ins.on_conflict_do_update(index_elements=[_LEADS.c.lead_id], set_=sets)

    return on_conflict


@cache
def _touch_all_statement(dialect: str, shape: tuple[tuple[str, bool], ...]) -> Any:
    """``touch_leads``' upsert for an executemany (rows run one after the other)."""
    return _touch_all(shape)(dialect_insert(dialect)(_LEADS))


_LEAD_FACTS = select(
    _LEADS.c.source, _LEADS.c.campaign, _LEADS.c.mql_at, _LEADS.c.contract_version
).where(_LEADS.c.lead_id == bindparam("b_lead", type_=_LEADS.c.lead_id.type))
_FACTS_OF_LEADS = select(
    _LEADS.c.lead_id, _LEADS.c.source, _LEADS.c.campaign, _LEADS.c.mql_at, _LEADS.c.contract_version
).where(_LEADS.c.lead_id.in_(bindparam("b_leads", expanding=True)))
_CANCEL_RECYCLES = (
    update(_RECYCLES)
    .where(
        _RECYCLES.c.lead_id == bindparam("b_lead", type_=_RECYCLES.c.lead_id.type),
        _RECYCLES.c.status == PENDING,
        _RECYCLES.c.rejected_at <= bindparam("b_since", type_=_RECYCLES.c.rejected_at.type),
    )
    .values(status=CANCELLED)
)


async def touch_lead(session: AsyncSession, lead_id: str, **values: Any) -> None:
    """Set funnel facts of a lead (creating its row); ``None`` values are left alone.
    Keys ending in ``__earliest`` keep the earliest time seen.

    One upsert, not an insert then an update: it runs for every funnel event."""
    params: dict[str, Any] = {"lead_id": lead_id}
    shape: list[tuple[str, bool]] = []
    for key, value in values.items():
        if value is None:
            continue
        name = key.removesuffix("__earliest")
        params[name] = value
        shape.append((name, name != key))
    stmt = _touch_statement(dialect_name(session), frozenset(shape))
    await core_execute(session, stmt, params)


async def touch_leads(
    session: AsyncSession, facts: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """``touch_lead(session, lead_id, **values)`` for each ``(lead_id, values)`` in order,
    in one statement: with each lead once, all rows at once (``insert_rows``: one
    ``unnest`` on PostgreSQL, where an executemany cost an execution per lead); with a lead
    given twice, the driver's executemany (rows run one after the other, so it ends as
    after two ``touch_lead`` — one PostgreSQL statement cannot update a row twice).
    Every ``values`` must have the same keys (``feedback.domain.projection`` gives them)."""
    if not facts:
        return
    keys = tuple(facts[0][1])
    shape = tuple((key.removesuffix("__earliest"), key.endswith("__earliest")) for key in keys)
    rows = [
        {
            "lead_id": lead_id,
            **{name: values[key] for key, (name, _) in zip(keys, shape, strict=True)},
        }
        for lead_id, values in facts
    ]
    if len({lead_id for lead_id, _ in facts}) == len(facts):
        # Each lead once: one statement of any number of rows (an unnest on PostgreSQL).
        connection = await core_connection(session)
        await connection.insert_rows(_LEADS, rows, on_conflict=_touch_all(shape))
    else:
        await core_execute(session, _touch_all_statement(dialect_name(session), shape), rows)


async def lead(session: AsyncSession, lead_id: str) -> LeadRow | None:
    return await session.get(LeadRow, lead_id)


async def lead_facts(session: AsyncSession, lead_id: str) -> Row[Any, Any, Any, Any] | None:
    """What folding an event reads of a lead: its ``source``, ``campaign``, ``mql_at``
    and ``contract_version`` as stored now (one Core select; None: no row yet)."""
    result = await core_execute(session, _LEAD_FACTS, {"b_lead": lead_id})
    return result.one_or_none()


async def lead_facts_of(
    session: AsyncSession, lead_ids: Sequence[str]
) -> dict[str, Row[Any, Any, Any, Any, Any]]:
    """:func:`lead_facts` of many leads in one select, by lead id (a lead without a row
    is missing)."""
    result = await core_execute(session, _FACTS_OF_LEADS, {"b_leads": list(lead_ids)})
    return {row.lead_id: row for row in result}


async def leads_between(
    session: AsyncSession, start: datetime | None = None, end: datetime | None = None
) -> Sequence[LeadRow]:
    """Every lead with any funnel fact in [start, end) (all leads without bounds)."""
    query = select(LeadRow)
    if start is not None and end is not None:
        cols = (
            LeadRow.created_at,
            LeadRow.mql_at,
            LeadRow.sql_at,
            LeadRow.won_at,
            LeadRow.lost_at,
            LeadRow.rejected_at,
        )
        query = query.where(or_(*(c.between(start, end) for c in cols)))
    rows = await session.scalars(query.order_by(LeadRow.lead_id))
    return rows.all()


async def record_breach(session: AsyncSession, lead_id: str, clause: str, at: datetime) -> None:
    await core_execute(
        session,
        insert_or_skip(_BREACHES, dialect_name(session)),
        {"lead_id": lead_id, "clause": clause, "detected_at": at},
    )


async def breaches_of(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for start in range(0, len(lead_ids), 500):
        chunk = list(lead_ids[start : start + 500])
        rows = await session.execute(
            select(BreachRow.lead_id, BreachRow.clause).where(BreachRow.lead_id.in_(chunk))
        )
        for lead_id, clause in rows.all():
            found.setdefault(lead_id, set()).add(clause)
    return found


async def record_attempt(
    session: AsyncSession, lead_id: str, channel: str, contacted_at: datetime
) -> None:
    """Add to the attempts ledger; the same attempt reported twice counts once."""
    await core_execute(
        session,
        insert_or_skip(_ATTEMPTS, dialect_name(session)),
        {"lead_id": lead_id, "channel": channel, "contacted_at": contacted_at},
    )


async def record_attempts(session: AsyncSession, attempts: Sequence[Mapping[str, Any]]) -> None:
    """:func:`record_attempt` for each ``{lead_id, channel, contacted_at}``, in one
    statement (rows in order, so the ledger's ids are as one by one)."""
    if attempts:
        await core_execute(
            session, insert_or_skip(_ATTEMPTS, dialect_name(session)), list(attempts)
        )


async def attempts_of(session: AsyncSession, lead_id: str) -> list[tuple[str, datetime]]:
    rows = await session.execute(
        select(AttemptRow.channel, AttemptRow.contacted_at).where(AttemptRow.lead_id == lead_id)
    )
    return [(channel, at) for channel, at in rows.all()]


# ---- recycles ----------------------------------------------------------------------------


async def schedule_recycle(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await core_execute(session, insert_or_skip(_RECYCLES, dialect_name(session)), values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def cancel_recycles(session: AsyncSession, lead_id: str, since: datetime) -> None:
    """The lead was won back (accepted, deal closed) after its rejection: no recycle."""
    await core_execute(session, _CANCEL_RECYCLES, {"b_lead": lead_id, "b_since": since})


async def cancel_recycles_of(session: AsyncSession, wins: Sequence[tuple[str, datetime]]) -> None:
    """:func:`cancel_recycles` for each ``(lead_id, since)``, in one statement."""
    if wins:
        await core_execute(
            session,
            _CANCEL_RECYCLES,
            [{"b_lead": lead_id, "b_since": since} for lead_id, since in wins],
        )


async def due_recycles(session: AsyncSession, now: datetime, limit: int) -> Sequence[RecycleRow]:
    rows = await session.scalars(
        select(RecycleRow)
        .where(RecycleRow.status == PENDING, RecycleRow.due_at <= now)
        .order_by(RecycleRow.due_at, RecycleRow.id)
        .limit(limit)
    )
    return rows.all()


async def next_recycle(session: AsyncSession) -> datetime | None:
    result: datetime | None = await session.scalar(
        select(func.min(RecycleRow.due_at)).where(RecycleRow.status == PENDING)
    )
    if result is not None and result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    return result


async def mark_recycled(session: AsyncSession, row_id: int, at: datetime) -> bool:
    """pending → done; False when another worker got there first (exactly once)."""
    result = await session.execute(
        update(RecycleRow)
        .where(RecycleRow.id == row_id, RecycleRow.status == PENDING)
        .values(status=DONE, done_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def recycles_of(session: AsyncSession, lead_id: str) -> Sequence[RecycleRow]:
    rows = await session.scalars(
        select(RecycleRow).where(RecycleRow.lead_id == lead_id).order_by(RecycleRow.id)
    )
    return rows.all()


# ---- spend, touchpoints, CRM links --------------------------------------------------------


async def upsert_spend(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """A day's spend for a source and campaign replaces what was posted before."""
    for values in rows:
        stmt = insert_for(session)(SpendRow.__table__).values(**values)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["day", "source", "campaign"],
                set_={"amount": stmt.excluded.amount, "currency": stmt.excluded.currency},
            )
        )


async def spend_between(session: AsyncSession, start: date, end: date) -> Sequence[SpendRow]:
    rows = await session.scalars(
        select(SpendRow).where(SpendRow.day >= start, SpendRow.day < end).order_by(SpendRow.day)
    )
    return rows.all()


async def add_touch(
    session: AsyncSession, lead_id: str, at: datetime, kind: str, campaign: str | None
) -> None:
    await core_execute(
        session,
        insert_or_skip(_TOUCHES, dialect_name(session)),
        {"lead_id": lead_id, "at": at, "kind": kind, "campaign": campaign},
    )


async def add_touches(session: AsyncSession, touches: Sequence[Mapping[str, Any]]) -> None:
    """:func:`add_touch` for each ``{lead_id, at, kind, campaign}``, in one statement (rows
    in order, so the touchpoints' ids are as one by one)."""
    if touches:
        connection = await core_connection(session)
        await connection.insert_rows(_TOUCHES, touches, skip_conflicts_on=())


async def touches_of(
    session: AsyncSession, lead_ids: Sequence[str]
) -> dict[str, list[tuple[datetime, str, str | None]]]:
    found: dict[str, list[tuple[datetime, str, str | None]]] = {}
    for start in range(0, len(lead_ids), 500):
        chunk = list(lead_ids[start : start + 500])
        rows = await session.execute(
            select(TouchRow.lead_id, TouchRow.at, TouchRow.kind, TouchRow.campaign)
            .where(TouchRow.lead_id.in_(chunk))
            .order_by(TouchRow.at, TouchRow.id)
        )
        for lead_id, at, kind, campaign in rows.all():
            found.setdefault(lead_id, []).append((at, kind, campaign))
    return found


async def link(
    session: AsyncSession, crm: str, object_id: str, lead_id: str, amount: Decimal | None = None
) -> None:
    stmt = insert_for(session)(CrmLinkRow.__table__).values(
        crm=crm, object_id=object_id, lead_id=lead_id, amount=amount
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["crm", "object_id"], set_={"lead_id": stmt.excluded.lead_id}
        )
    )


async def linked(session: AsyncSession, crm: str, object_id: str) -> CrmLinkRow | None:
    return await session.get(CrmLinkRow, (crm, object_id))


async def set_link_amount(session: AsyncSession, crm: str, object_id: str, amount: Decimal) -> bool:
    result = await session.execute(
        update(CrmLinkRow)
        .where(CrmLinkRow.crm == crm, CrmLinkRow.object_id == object_id)
        .values(amount=amount)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def facts_between(session: AsyncSession, start: datetime, end: datetime) -> list[LeadFacts]:
    """Funnel facts of every lead with a fact in [start, end), with the SLA clauses each
    breached."""
    rows = await leads_between(session, start, end)
    breached = await breaches_of(session, [r.lead_id for r in rows])
    return [
        LeadFacts(
            lead_id=r.lead_id,
            created_at=r.created_at,
            source=r.source,
            campaign=r.campaign,
            owner=r.owner,
            mql_at=r.mql_at,
            first_contact_at=r.first_contact_at,
            sql_at=r.sql_at,
            rejected_at=r.rejected_at,
            reject_reason=r.reject_reason,
            won_at=r.won_at,
            lost_at=r.lost_at,
            amount=r.amount,
            points=r.points,
            breaches=frozenset(breached.get(r.lead_id, ())),
        )
        for r in rows
    ]


async def spend_facts(session: AsyncSession, start: date, end: date) -> list[Spend]:
    return [
        Spend(day=r.day, source=r.source, campaign=r.campaign, amount=r.amount)
        for r in await spend_between(session, start, end)
    ]


async def erase_pending_events(session: AsyncSession, lead_ids: Sequence[str]) -> int:
    """Rewrite the erased leads' events the relay has not published yet (their free text
    goes, the funnel facts stay); returns how many were rewritten."""
    return await rewrite_pending_events(session, lead_ids, erased_event_data)
