"""The sla-monitor's own table: one deadline per (lead, clause), and the queries on it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    case,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from leadpact.db import (
    UtcDateTime,
    core_connection,
    core_execute,
    dialect_name,
    insert_for,
    insert_or_skip,
)
from sla_monitor.domain import CLAUSE_TEAM

OPEN, MET, BREACHED = "open", "met", "breached"


class Base(DeclarativeBase):
    pass


class DeadlineRow(Base):
    """A clause armed for a lead. ``status`` moves once: open → met or open → breached."""

    __tablename__ = "sla_deadlines"
    # A business fact happens once: a lead has one deadline per clause however often it
    # is scored MQL again. ``round`` > 0 only for a fresh first-contact deadline given to
    # the next owner after an escalation; round 0 stays the lead's record.
    __table_args__ = (
        UniqueConstraint("lead_id", "clause", "round", name="uq_sla_deadlines_lead_clause_round"),
        # The watch asks for the open deadlines of the partitions it owns (plus the
        # unpartitioned ones) due or at risk by a time: status and partition are equality
        # (or IS NULL) conditions, the time a range, in that order.
        Index("ix_sla_deadlines_status_partition_due", "status", "partition", "due_at"),
        Index("ix_sla_deadlines_status_partition_risk", "status", "partition", "at_risk_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64))
    clause: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    armed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    at_risk_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    owner: Mapped[str | None] = mapped_column(String(200))
    # The owner's team when armed, the team held to it when breached; None = the clause's.
    team: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(100))
    contract_version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    contacted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    warned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    partition: Mapped[int | None] = mapped_column(
        Integer,
        doc="partition of lead.scored the lead's key lives on: the sla-monitor instance "
        "owning it watches this deadline; NULL (armed before partitions were recorded) is "
        "watched by every instance",
    )


class AttemptRow(Base):
    """One contact attempt on a lead: the attempts clause's ledger."""

    __tablename__ = "sla_attempts"
    # The same attempt reported twice (two event ids) is one attempt.
    __table_args__ = (UniqueConstraint("lead_id", "channel", "contacted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    contacted_at: Mapped[datetime] = mapped_column(UtcDateTime)


_DEADLINES = cast(Table, DeadlineRow.__table__)
_ATTEMPTS = cast(Table, AttemptRow.__table__)


def _arming(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (lead_id, clause, round) DO NOTHING`` on the deadlines, built
    once per dialect (a Core insert on the Table: with rowcount)."""
    return insert_or_skip(_DEADLINES, dialect, "lead_id", "clause", "round")


async def arm_all(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """:func:`arm` for several clauses of one lead: the clauses inserted (not armed
    before)."""
    return {clause for _, clause in await arm_leads(session, rows)}


async def arm_leads(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """:func:`arm` for several deadlines, of one lead or of a batch's leads, in order: the
    (lead, clause) of those inserted (not armed before). One statement for them all when
    every row has its ``partition`` (the hot path: every MQL arms each clause of its
    contract): the rows the conflict skipped return nothing."""
    if not rows:
        return set()
    if any(values.get("partition") is None for values in rows):
        return {(v["lead_id"], v["clause"]) for v in rows if await arm(session, v)}
    params = [{"round": 0, "team": None, **values, "status": OPEN} for values in rows]
    armed = await (await core_connection(session)).insert_rows(
        _DEADLINES,
        params,
        skip_conflicts_on=("lead_id", "clause", "round"),
        returning=("lead_id", "clause"),
    )
    return {(lead_id, clause) for lead_id, clause in armed}


async def arm(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the deadline unless this (lead, clause) has one; True when inserted.

    Without a ``partition`` (a deadline armed outside a ``lead.scored`` delivery, such as
    an escalation's next round) it takes the partition of the lead's existing deadlines,
    so every deadline of a lead is watched by the same instance."""
    values = {"round": 0, "team": None, **values, "status": OPEN}
    if values.get("partition") is not None:
        # The hot path (every MQL): a statement built once, only the values bound.
        armed = await core_execute(session, _arming(dialect_name(session)), values)
        return bool(armed.rowcount)
    values["partition"] = (
        select(DeadlineRow.partition)
        .where(DeadlineRow.lead_id == values["lead_id"], DeadlineRow.partition.is_not(None))
        .limit(1)
        .scalar_subquery()
    )
    stmt = insert_for(session)(DeadlineRow).values(**values)
    result = await session.execute(
        stmt.on_conflict_do_nothing(index_elements=["lead_id", "clause", "round"])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _param(name: str, column: Column[Any]) -> BindParameter[Any]:
    return bindparam(name, type_=column.type)


# The statements of the event handlers' path, built once and executed with parameters (as
# ``_ARM``): building, coercing and hashing a fresh statement per call was most of a
# handler's CPU time. Core statements on the tables: no ORM object is in the session
# when the handlers run them (each event starts with an empty session), so there is
# nothing for the ORM to synchronise.
_B_LEAD = _param("b_lead", _DEADLINES.c.lead_id)
_B_CLAUSE = _param("b_clause", _DEADLINES.c.clause)
_B_AT = _param("b_at", _DEADLINES.c.resolved_at)


def _mark_met_statement(on_time_only: bool) -> Any:
    conditions = [
        _DEADLINES.c.lead_id == _B_LEAD,
        _DEADLINES.c.clause == _B_CLAUSE,
        _DEADLINES.c.status == OPEN,
    ]
    if on_time_only:
        conditions.append(_DEADLINES.c.due_at >= _B_AT)
    return update(_DEADLINES).where(*conditions).values(status=MET, resolved_at=_B_AT)


_MARK_MET = {flag: _mark_met_statement(flag) for flag in (False, True)}


def _first_contact_statement(with_owner: bool) -> Any:
    values: dict[str, Any] = {"contacted_at": _param("b_at", _DEADLINES.c.contacted_at)}
    if with_owner:
        values["owner"] = _param("b_owner", _DEADLINES.c.owner)
    return (
        update(_DEADLINES)
        .where(
            _DEADLINES.c.lead_id == _B_LEAD,
            _DEADLINES.c.clause == "first_contact",
            _DEADLINES.c.round == 0,
            _DEADLINES.c.contacted_at.is_(None),
        )
        .values(values)
        .returning(_DEADLINES.c.started_at)
    )


_FIRST_CONTACT = {flag: _first_contact_statement(flag) for flag in (False, True)}
_ATTEMPTS_OF = select(_ATTEMPTS.c.channel, _ATTEMPTS.c.contacted_at).where(
    _ATTEMPTS.c.lead_id == _param("b_lead", _ATTEMPTS.c.lead_id)
)
_LATEST_DEADLINE = (
    select(DeadlineRow)
    .where(DeadlineRow.lead_id == _B_LEAD, DeadlineRow.clause == _B_CLAUSE)
    .order_by(DeadlineRow.round.desc())
    .limit(1)
)


async def mark_met(
    session: AsyncSession, lead_id: str, clause: str, at: datetime, *, on_time_only: bool = True
) -> bool:
    """Open → met (when ``at`` is on time, unless told otherwise); True when it changed."""
    params = {"b_lead": lead_id, "b_clause": clause, "b_at": at}
    result = await core_execute(session, _MARK_MET[on_time_only], params)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_first_contact(
    session: AsyncSession, lead_id: str, at: datetime, owner: str | None
) -> datetime | None:
    """Remember the first contact once; returns when the first-contact clause started (the
    MQL time) the first time only, None otherwise."""
    params: dict[str, Any] = {"b_lead": lead_id, "b_at": at}
    if owner is not None:
        params["b_owner"] = owner
    result = await core_execute(session, _FIRST_CONTACT[owner is not None], params)
    started: datetime | None = result.scalar_one_or_none()
    return started


async def record_attempt(session: AsyncSession, lead_id: str, channel: str, at: datetime) -> None:
    params = {"lead_id": lead_id, "channel": channel, "contacted_at": at}
    await core_execute(session, insert_or_skip(_ATTEMPTS, dialect_name(session)), params)


async def attempts_of(session: AsyncSession, lead_id: str) -> list[tuple[str, datetime]]:
    rows = await core_execute(session, _ATTEMPTS_OF, {"b_lead": lead_id})
    return [(channel, at) for channel, at in rows.all()]


async def deadline(session: AsyncSession, lead_id: str, clause: str) -> DeadlineRow | None:
    """The lead's latest deadline of ``clause`` (the highest round)."""
    found: DeadlineRow | None = await session.scalar(
        _LATEST_DEADLINE, {"b_lead": lead_id, "b_clause": clause}
    )
    return found


async def mark_warned(session: AsyncSession, row_id: int, at: datetime) -> bool:
    """Record the at-risk warning once; False when it was sent or the clause resolved."""
    result = await session.execute(
        update(DeadlineRow)
        .where(
            DeadlineRow.id == row_id, DeadlineRow.status == OPEN, DeadlineRow.warned_at.is_(None)
        )
        .values(warned_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def watched(partitions: Collection[int] | None) -> ColumnElement[bool]:
    """The deadlines a watch owning ``partitions`` looks after: those of its partitions and
    those armed before partitions were recorded (NULL). ``None``: every deadline (a watch
    that follows no consumer group, e.g. tools and tests)."""
    if partitions is None:
        return true()
    return or_(DeadlineRow.partition.in_(sorted(partitions)), DeadlineRow.partition.is_(None))


async def at_risk(
    session: AsyncSession,
    now: datetime,
    clauses: Sequence[str],
    limit: int,
    partitions: Collection[int] | None = None,
) -> Sequence[DeadlineRow]:
    """Open, unwarned deadlines of ``partitions`` whose at-risk time has come."""
    rows = await session.scalars(
        select(DeadlineRow)
        .where(
            DeadlineRow.status == OPEN,
            watched(partitions),
            DeadlineRow.clause.in_(clauses),
            DeadlineRow.warned_at.is_(None),
            DeadlineRow.at_risk_at <= now,
        )
        .order_by(DeadlineRow.at_risk_at, DeadlineRow.id)
        .limit(limit)
    )
    return rows.all()


async def open_count(session: AsyncSession, partitions: Collection[int] | None = None) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(DeadlineRow)
        .where(DeadlineRow.status == OPEN, watched(partitions))
    )
    return int(count or 0)


def answering_team() -> ColumnElement[str]:
    """The deadline's team, or for rows that have none the team answering for its clause."""
    by_clause = case(CLAUSE_TEAM, value=DeadlineRow.clause, else_="sales")
    return func.coalesce(DeadlineRow.team, by_clause)


async def breaches(
    session: AsyncSession,
    since: datetime | None,
    clauses: Sequence[str],
    limit: int,
    team: str | None = None,
) -> Sequence[DeadlineRow]:
    """The breach log of these clauses: breached deadlines, newest detection last."""
    query = select(DeadlineRow).where(
        DeadlineRow.status == BREACHED, DeadlineRow.clause.in_(clauses)
    )
    if since is not None:
        query = query.where(DeadlineRow.resolved_at >= since)
    if team is not None:
        query = query.where(answering_team() == team)
    rows = await session.scalars(
        query.order_by(DeadlineRow.resolved_at, DeadlineRow.id).limit(limit)
    )
    return rows.all()


async def status_counts(
    session: AsyncSession, since: datetime, until: datetime
) -> list[tuple[str, str, str, int]]:
    """(clause, team, status, deadlines) for the leads that became MQLs in [since, until)."""
    team = answering_team()
    rows = await session.execute(
        select(DeadlineRow.clause, team, DeadlineRow.status, func.count())
        .where(
            DeadlineRow.started_at >= since,
            DeadlineRow.started_at < until,
            DeadlineRow.round == 0,  # compliance judges the lead, not its escalations
        )
        .group_by(DeadlineRow.clause, team, DeadlineRow.status)
    )
    return [(clause, team, status, int(n)) for clause, team, status, n in rows.all()]


async def mark_breached(
    session: AsyncSession, row_id: int, detected_at: datetime, team: str | None = None
) -> bool:
    """Open → breached, held against ``team``; False when someone else (another worker, a
    contact) got there first. The status condition is what makes the breach happen once."""
    values: dict[str, Any] = {"status": BREACHED, "resolved_at": detected_at}
    if team is not None:
        values["team"] = team
    result = await session.execute(
        update(DeadlineRow)
        .where(DeadlineRow.id == row_id, DeadlineRow.status == OPEN)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def overdue(
    session: AsyncSession,
    now: datetime,
    clauses: Sequence[str],
    limit: int,
    partitions: Collection[int] | None = None,
) -> Sequence[DeadlineRow]:
    """Open deadlines of ``partitions`` and the timed ``clauses`` due at or before ``now``,
    oldest first."""
    rows = await session.scalars(
        select(DeadlineRow)
        .where(
            DeadlineRow.status == OPEN,
            watched(partitions),
            DeadlineRow.clause.in_(clauses),
            DeadlineRow.due_at <= now,
        )
        # A fixed order makes racing watches lock rows in the same order: no deadlock.
        .order_by(DeadlineRow.due_at, DeadlineRow.id)
        .limit(limit)
    )
    return rows.all()


async def open_wake_times(
    session: AsyncSession,
    until: datetime,
    clauses: Sequence[str],
    limit: int,
    partitions: Collection[int] | None = None,
) -> list[datetime]:
    """Due and at-risk times of the open deadlines of ``partitions`` up to ``until`` (the
    watch's horizon)."""
    open_timed = (
        DeadlineRow.status == OPEN,
        watched(partitions),
        DeadlineRow.clause.in_(clauses),
    )
    dues = await session.scalars(
        select(DeadlineRow.due_at)
        .where(*open_timed, DeadlineRow.due_at <= until)
        .order_by(DeadlineRow.due_at)
        .limit(limit)
    )
    warnings = await session.scalars(
        select(DeadlineRow.at_risk_at)
        .where(*open_timed, DeadlineRow.warned_at.is_(None), DeadlineRow.at_risk_at <= until)
        .order_by(DeadlineRow.at_risk_at)
        .limit(limit)
    )
    times = sorted([*dues.all(), *(w for w in warnings.all() if w is not None)])
    return times[:limit]


async def lead_deadlines(session: AsyncSession, lead_id: str) -> Sequence[DeadlineRow]:
    rows = await session.scalars(
        select(DeadlineRow).where(DeadlineRow.lead_id == lead_id).order_by(DeadlineRow.id)
    )
    return rows.all()


async def set_owner(session: AsyncSession, lead_id: str, owner: str) -> None:
    """The lead changed hands: its open deadlines now name the new owner (met and breached
    ones keep the owner they were judged against)."""
    await session.execute(
        update(DeadlineRow)
        .where(DeadlineRow.lead_id == lead_id, DeadlineRow.status == OPEN)
        .values(owner=owner)
    )
