"""Routing tables: lead facts, one current assignment per lead (and its history), the
round-robin state per team and member, and the members' runtime settings (away, hours,
capacity, share) that override the contract for the next assignments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    JSON,
    BindParameter,
    Boolean,
    Float,
    Index,
    Integer,
    Row,
    String,
    Table,
    bindparam,
    case,
    false,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from leadpact.db import (
    UtcDateTime,
    core_connection,
    core_execute,
    dialect_name,
    insert_for,
    insert_or_skip,
)
from sla_monitor.store import AttemptRow, Base

OPEN, CLOSED = "open", "closed"


class LeadFactsRow(Base):
    """The firmographics routing rules look at, from ``lead.created`` (no personal data)."""

    __tablename__ = "routing_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    country: Mapped[str | None] = mapped_column(String(8))
    company_size: Mapped[int | None] = mapped_column(Integer)
    industry: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    existing_customer: Mapped[bool | None] = mapped_column(
        Boolean, doc="crm-sync knew the person as a paying customer when the lead came in"
    )
    account_owner: Mapped[str | None] = mapped_column(
        String(200), doc="who owned the customer's latest earlier lead when this one came in"
    )


class AssignmentRow(Base):
    """Who owns a lead now. The primary key makes the first assignment happen once."""

    __tablename__ = "routing_assignments"
    __table_args__ = (Index("ix_routing_assignments_owner_status", "owner", "status"),)

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(32))
    contract_version: Mapped[str | None] = mapped_column(String(100))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    routed_owner: Mapped[str | None] = mapped_column(
        String(200), doc="who routing picked, when the CRM decided otherwise"
    )
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    round: Mapped[int] = mapped_column(Integer, default=0)


class AssignmentLogRow(Base):
    """Every change of owner, never rewritten: routing, CRM, manual, escalation."""

    __tablename__ = "routing_assignment_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(200))
    previous_owner: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(32))
    by: Mapped[str | None] = mapped_column(String(200))
    why: Mapped[str | None] = mapped_column(String(500))
    contract_version: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class MemberStateRow(Base):
    """A member's round-robin pass, open leads, and the settings changed by API."""

    __tablename__ = "routing_members"

    member_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(100))
    virtual_pass: Mapped[float] = mapped_column(Float, default=0.0)
    open_leads: Mapped[int] = mapped_column(Integer, default=0)
    assigned: Mapped[int] = mapped_column(Integer, default=0)
    away_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    away_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class TeamStateRow(Base):
    """A team's round-robin virtual time (the row locked while a lead is assigned)."""

    __tablename__ = "routing_teams"

    team_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    vtime: Mapped[float] = mapped_column(Float, default=0.0)
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# ---- statements of the assignment path -------------------------------------------------
# Built once and executed with parameters: SQLAlchemy then reuses the compiled SQL (the
# cache key of a constant statement is memoised) instead of building, coercing and
# hashing a fresh statement for each lead, which was most of an assignment's CPU time.

_FACTS = cast(Table, LeadFactsRow.__table__)
_ASSIGNMENTS = cast(Table, AssignmentRow.__table__)
_LOG = cast(Table, AssignmentLogRow.__table__)
_MEMBERS = cast(Table, MemberStateRow.__table__)
_TEAMS = cast(Table, TeamStateRow.__table__)


_SELECT_FACTS = select(
    _FACTS.c.country,
    _FACTS.c.company_size,
    _FACTS.c.industry,
    _FACTS.c.source,
    _FACTS.c.existing_customer,
    _FACTS.c.account_owner,
).where(_FACTS.c.lead_id == bindparam("b_lead"))
_B_LEADS: BindParameter[list[str]] = bindparam("b_leads", expanding=True)
_ATTEMPTS = cast(Table, AttemptRow.__table__)
_FACT_COLUMNS = (
    "country",
    "company_size",
    "industry",
    "source",
    "existing_customer",
    "account_owner",
)


def _seen_in(table: Table) -> Any:
    """The batch's leads that have a row in ``table``, shaped as the facts rows."""
    nothing = [null().label(name) for name in _FACT_COLUMNS]
    return select(table.c.lead_id, true().label("seen"), *nothing).where(
        table.c.lead_id.in_(_B_LEADS)
    )


_KNOWN_LEADS = union_all(
    select(
        _FACTS.c.lead_id, false().label("seen"), *(_FACTS.c[name] for name in _FACT_COLUMNS)
    ).where(_FACTS.c.lead_id.in_(_B_LEADS)),
    _seen_in(_ASSIGNMENTS),
    _seen_in(_ATTEMPTS),
)
_TAKE_TURN = (
    update(_MEMBERS)
    .where(_MEMBERS.c.member_id == bindparam("b_member"))
    .values(
        virtual_pass=bindparam("b_pass"),
        assigned=_MEMBERS.c.assigned + 1,
        open_leads=_MEMBERS.c.open_leads + 1,
    )
    .returning(_MEMBERS.c.open_leads)
)
_TAKE_TURNS = (
    update(_MEMBERS)
    .where(_MEMBERS.c.member_id == bindparam("b_member"))
    .values(
        virtual_pass=bindparam("b_pass"),
        assigned=_MEMBERS.c.assigned + bindparam("b_turns"),
        open_leads=_MEMBERS.c.open_leads + bindparam("b_turns"),
    )
)
_SET_VTIME = (
    update(_TEAMS).where(_TEAMS.c.team_id == bindparam("b_team")).values(vtime=bindparam("b_vtime"))
)
_TEAM_VTIME = select(_TEAMS.c.vtime).where(_TEAMS.c.team_id == bindparam("b_team"))
_CLOSE = (
    update(_ASSIGNMENTS)
    .where(_ASSIGNMENTS.c.lead_id == bindparam("b_lead"), _ASSIGNMENTS.c.status == OPEN)
    .values(status=CLOSED)
    .returning(_ASSIGNMENTS.c.owner)
)
_ADD_OPEN = (
    update(_MEMBERS)
    .where(_MEMBERS.c.member_id == bindparam("b_member"))
    .values(
        open_leads=case(
            (_MEMBERS.c.open_leads + bindparam("b_delta") < 0, 0),
            else_=_MEMBERS.c.open_leads + bindparam("b_delta"),
        )
    )
    .returning(_MEMBERS.c.open_leads)
)


def _turn_query(lock: bool) -> Any:
    """The team's virtual time and its members' round-robin state and settings, in one
    statement. With ``lock`` (PostgreSQL) the team row and its members' rows stay locked
    until commit: every row of the join is locked, so after waiting for another
    assignment in the team the statement returns the members' passes that assignment
    committed (locking the team row alone would return the members as they were before
    the wait, and give a turn twice)."""
    query = (
        select(
            _TEAMS.c.vtime,
            _MEMBERS.c.member_id,
            _MEMBERS.c.virtual_pass,
            _MEMBERS.c.open_leads,
            _MEMBERS.c.away_from,
            _MEMBERS.c.away_to,
            _MEMBERS.c.overrides,
        )
        .select_from(
            _TEAMS.join(_MEMBERS, _MEMBERS.c.member_id.in_(bindparam("b_members", expanding=True)))
        )
        .where(_TEAMS.c.team_id == bindparam("b_team"))
        .order_by(_MEMBERS.c.member_id)  # one locking order for every assignment
    )
    return query.with_for_update(of=[_TEAMS, _MEMBERS]) if lock else query


_TURN = {False: _turn_query(False), True: _turn_query(True)}


# ---- lead facts -----------------------------------------------------------------------


async def save_facts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Leads' facts, in order, in one statement; a lead known already keeps its facts."""
    connection = await core_connection(session)
    await connection.insert_rows(_FACTS, rows, skip_conflicts_on=("lead_id",))


async def facts(session: AsyncSession, lead_id: str) -> Row[Any, Any, Any, Any, Any, Any] | None:
    """The lead's country, company_size, industry, source, existing_customer and
    account_owner, when ``lead.created`` came (a row with those attributes)."""
    result = await core_execute(session, _SELECT_FACTS, {"b_lead": lead_id})
    found: Row[Any, Any, Any, Any, Any, Any] | None = result.one_or_none()
    return found


async def known_leads(
    session: AsyncSession, lead_ids: Sequence[str]
) -> tuple[dict[str, Any], set[str]]:
    """What a batch of MQLs needs to know of its leads, in one statement: their facts rows
    (as :func:`facts`, by lead id; none before ``lead.created``), and those already seen
    (an owner, or a contact attempt: scoring them is not the plain first assignment a
    batch can share)."""
    facts: dict[str, Any] = {}
    seen: set[str] = set()
    for row in await core_execute(session, _KNOWN_LEADS, {"b_leads": list(lead_ids)}):
        if row.seen:
            seen.add(row.lead_id)
        else:
            facts[row.lead_id] = row
    return facts, seen


# ---- assignments ----------------------------------------------------------------------


async def latest_owner(session: AsyncSession, lead_ids: Sequence[str]) -> str | None:
    """The current owner of the most recently assigned of these leads (a customer's
    earlier leads: that owner is the account owner)."""
    if not lead_ids:
        return None
    found: str | None = await session.scalar(
        select(AssignmentRow.owner)
        .where(AssignmentRow.lead_id.in_(list(lead_ids)))
        .order_by(AssignmentRow.assigned_at.desc(), AssignmentRow.lead_id)
        .limit(1)
    )
    return found


async def assignment(session: AsyncSession, lead_id: str) -> AssignmentRow | None:
    found: AssignmentRow | None = await session.scalar(
        select(AssignmentRow).where(AssignmentRow.lead_id == lead_id)
    )
    return found


async def insert_assignment(session: AsyncSession, values: dict[str, Any]) -> bool:
    """The first owner of a lead; False when the lead already has one (a redelivery, or
    another consumer got there first: the primary key decides)."""
    stmt = insert_or_skip(_ASSIGNMENTS, dialect_name(session), "lead_id")
    values = {"routed_owner": None, **values, "status": OPEN, "round": 0}
    result = await core_execute(session, stmt, values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def insert_assignments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """:func:`insert_assignment` of several leads in one statement; the leads inserted
    (a lead that has an owner already is skipped, as one by one)."""
    params = [{"routed_owner": None, **values, "status": OPEN, "round": 0} for values in rows]
    inserted = await (await core_connection(session)).insert_rows(
        _ASSIGNMENTS, params, skip_conflicts_on=("lead_id",), returning=("lead_id",)
    )
    return {lead_id for (lead_id,) in inserted}


async def change_owner(
    session: AsyncSession,
    lead_id: str,
    *,
    expected: str,
    owner: str,
    team: str | None,
    reason: str,
    at: datetime,
    next_round: bool = False,
    routed_owner: str | None = None,
) -> bool:
    """Current owner ``expected`` → ``owner``; False when someone changed it meanwhile."""
    values: dict[str, Any] = {"owner": owner, "team": team, "reason": reason, "assigned_at": at}
    if next_round:
        values["round"] = AssignmentRow.round + 1
    if routed_owner is not None:
        values["routed_owner"] = routed_owner
    result = await session.execute(
        update(AssignmentRow)
        .where(AssignmentRow.lead_id == lead_id, AssignmentRow.owner == expected)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def close(session: AsyncSession, lead_id: str) -> str | None:
    """The lead is decided (accepted or rejected): open → closed; returns the owner whose
    open leads drop, or None when it was not open."""
    result = await core_execute(session, _CLOSE, {"b_lead": lead_id})
    owner: str | None = result.scalar_one_or_none()
    return owner


async def log(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """History rows, in order (one statement however many)."""
    await (await core_connection(session)).insert_rows(_LOG, rows)


async def history(session: AsyncSession, lead_id: str) -> Sequence[AssignmentLogRow]:
    rows = await session.scalars(
        select(AssignmentLogRow)
        .where(AssignmentLogRow.lead_id == lead_id)
        .order_by(AssignmentLogRow.id)
    )
    return rows.all()


# ---- round-robin state ----------------------------------------------------------------


class MemberState(Protocol):
    """What the round-robin reads of a member: a state row, or the assignment path's
    light copy of one."""

    @property
    def virtual_pass(self) -> float: ...
    @property
    def open_leads(self) -> int: ...
    @property
    def away_from(self) -> datetime | None: ...
    @property
    def away_to(self) -> datetime | None: ...
    @property
    def overrides(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class TurnState:
    virtual_pass: float
    open_leads: int
    away_from: datetime | None
    away_to: datetime | None
    overrides: dict[str, Any] | None


async def turn_state(
    session: AsyncSession, team_id: str, member_ids: Sequence[str], *, lock: bool
) -> tuple[float, dict[str, TurnState]]:
    """The team's virtual time and its members' state and settings, read together (one
    statement, the team row locked with ``lock``): settings changed by API count from the
    next assignment on, on every instance, with no cache to invalidate. A team or member
    seen for the first time gets its row (a new member starts at the team's virtual time,
    so it gets no catch-up burst)."""
    params = {"b_team": team_id, "b_members": list(member_ids)}
    rows = (await core_execute(session, _TURN[lock], params)).all()
    if len(rows) < len(set(member_ids)):  # the team's or a member's row is missing
        dialect = dialect_name(session)
        await core_execute(
            session, insert_or_skip(_TEAMS, dialect, "team_id"), {"team_id": team_id, "vtime": 0.0}
        )
        # Plain read (no lock): the new members' starting pass only.
        vtime = (await core_execute(session, _TEAM_VTIME, {"b_team": team_id})).scalar_one()
        await core_execute(
            session,
            insert_or_skip(_MEMBERS, dialect, "member_id"),
            [
                {
                    "member_id": m,
                    "team_id": team_id,
                    "virtual_pass": vtime,
                    "open_leads": 0,
                    "assigned": 0,
                }
                for m in dict.fromkeys(member_ids)
            ],
        )
        rows = (await core_execute(session, _TURN[lock], params)).all()
    return rows[0].vtime, {
        r.member_id: TurnState(r.virtual_pass, r.open_leads, r.away_from, r.away_to, r.overrides)
        for r in rows
    }


async def team_state(session: AsyncSession, team_id: str) -> TeamStateRow | None:
    found: TeamStateRow | None = await session.get(TeamStateRow, team_id)
    return found


async def members(session: AsyncSession, member_ids: Sequence[str]) -> dict[str, MemberStateRow]:
    """State rows of these members (the API's view)."""
    query = (
        select(MemberStateRow)
        .where(MemberStateRow.member_id.in_(member_ids))
        .execution_options(populate_existing=True)
    )
    return {r.member_id: r for r in (await session.scalars(query)).all()}


async def take_turn(
    session: AsyncSession,
    team_id: str,
    member_id: str,
    new_pass: float,
    new_vtime: float | None,
) -> int:
    """Record the chosen member's turn (and the team's new virtual time, unless it did not
    move: None); returns their open leads after it."""
    result = await core_execute(session, _TAKE_TURN, {"b_member": member_id, "b_pass": new_pass})
    open_now = int(result.scalar_one())
    if new_vtime is not None:
        await core_execute(session, _SET_VTIME, {"b_team": team_id, "b_vtime": new_vtime})
    return open_now


async def take_turns(
    session: AsyncSession, passes: Mapping[str, tuple[float, int]], vtimes: Mapping[str, float]
) -> None:
    """Several turns at once (a consumer batch's): each member's last pass and number of
    turns taken (``passes``), each team's last virtual time (``vtimes``, moved teams only).
    The rows end as :func:`take_turn` called once per turn leaves them."""
    if passes:
        await core_execute(
            session,
            _TAKE_TURNS,
            [
                {"b_member": member, "b_pass": new_pass, "b_turns": turns}
                for member, (new_pass, turns) in sorted(passes.items())  # one locking order
            ],
        )
    if vtimes:
        teams = [{"b_team": team, "b_vtime": vtime} for team, vtime in sorted(vtimes.items())]
        await core_execute(session, _SET_VTIME, teams)


async def add_open(session: AsyncSession, member_id: str, delta: int) -> int | None:
    """Move a member's open-lead count; returns it, or None for an unknown member (a CRM
    owner routing does not know)."""
    result = await core_execute(session, _ADD_OPEN, {"b_member": member_id, "b_delta": delta})
    found = result.scalar_one_or_none()
    return None if found is None else int(found)


async def count_assignment(session: AsyncSession, member_id: str, team_id: str | None) -> None:
    """A lead given outside the round-robin (CRM, manual): counts as open and assigned."""
    await session.execute(
        insert_for(session)(MemberStateRow)
        .values(member_id=member_id, team_id=team_id, virtual_pass=0.0, open_leads=0, assigned=0)
        .on_conflict_do_nothing(index_elements=["member_id"])
    )
    await session.execute(
        update(MemberStateRow)
        .where(MemberStateRow.member_id == member_id)
        .values(assigned=MemberStateRow.assigned + 1, open_leads=MemberStateRow.open_leads + 1)
    )


async def set_member(session: AsyncSession, member_id: str, values: dict[str, Any]) -> None:
    """Change a member's runtime settings (row created when missing)."""
    await session.execute(
        insert_for(session)(MemberStateRow)
        .values(member_id=member_id, virtual_pass=0.0, open_leads=0, assigned=0)
        .on_conflict_do_nothing(index_elements=["member_id"])
    )
    await session.execute(
        update(MemberStateRow).where(MemberStateRow.member_id == member_id).values(**values)
    )


async def set_team(session: AsyncSession, team_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        insert_for(session)(TeamStateRow)
        .values(team_id=team_id, vtime=0.0)
        .on_conflict_do_nothing(index_elements=["team_id"])
    )
    await session.execute(
        update(TeamStateRow).where(TeamStateRow.team_id == team_id).values(**values)
    )


async def team_states(session: AsyncSession) -> dict[str, TeamStateRow]:
    rows = await session.scalars(select(TeamStateRow))
    return {r.team_id: r for r in rows.all()}
