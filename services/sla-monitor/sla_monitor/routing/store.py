"""Routing tables: lead facts, one current assignment per lead (and its history), the
round-robin state per team and member, and the members' runtime settings (away, hours,
capacity, share) that override the contract for the next assignments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    Index,
    Integer,
    String,
    case,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from leadpact.db import UtcDateTime
from sla_monitor.store import Base, insert_for

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


# ---- lead facts -----------------------------------------------------------------------


async def save_facts(session: AsyncSession, values: dict[str, Any]) -> None:
    stmt = insert_for(session)(LeadFactsRow).values(**values)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["lead_id"]))


async def facts(session: AsyncSession, lead_id: str) -> LeadFactsRow | None:
    found: LeadFactsRow | None = await session.get(LeadFactsRow, lead_id)
    return found


# ---- assignments ----------------------------------------------------------------------


async def assignment(session: AsyncSession, lead_id: str) -> AssignmentRow | None:
    found: AssignmentRow | None = await session.scalar(
        select(AssignmentRow).where(AssignmentRow.lead_id == lead_id)
    )
    return found


async def insert_assignment(session: AsyncSession, values: dict[str, Any]) -> bool:
    """The first owner of a lead; False when the lead already has one (a redelivery, or
    another consumer got there first: the primary key decides)."""
    stmt = insert_for(session)(AssignmentRow).values(status=OPEN, round=0, **values)
    result = await session.execute(stmt.on_conflict_do_nothing(index_elements=["lead_id"]))
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
    result = await session.execute(
        update(AssignmentRow)
        .where(AssignmentRow.lead_id == lead_id, AssignmentRow.status == OPEN)
        .values(status=CLOSED)
        .returning(AssignmentRow.owner)
    )
    owner: str | None = result.scalar_one_or_none()
    return owner


async def log(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert_for(session)(AssignmentLogRow).values(**values))


async def history(session: AsyncSession, lead_id: str) -> Sequence[AssignmentLogRow]:
    rows = await session.scalars(
        select(AssignmentLogRow)
        .where(AssignmentLogRow.lead_id == lead_id)
        .order_by(AssignmentLogRow.id)
    )
    return rows.all()


# ---- round-robin state ----------------------------------------------------------------


async def lock_team(session: AsyncSession, team_id: str, is_sqlite: bool) -> TeamStateRow:
    """The team's state row, locked until commit (PostgreSQL; SQLite serialises writers):
    two consumers assigning in one team take turns, so no turn is given twice."""
    query = select(TeamStateRow).where(TeamStateRow.team_id == team_id)
    if not is_sqlite:
        query = query.with_for_update()
    query = query.execution_options(populate_existing=True)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:  # the team's first lead: create the row (once), then lock it
        await session.execute(
            insert_for(session)(TeamStateRow)
            .values(team_id=team_id, vtime=0.0)
            .on_conflict_do_nothing(index_elements=["team_id"])
        )
        row = (await session.execute(query)).scalar_one()
    return row


async def team_state(session: AsyncSession, team_id: str) -> TeamStateRow | None:
    found: TeamStateRow | None = await session.get(TeamStateRow, team_id)
    return found


async def members(
    session: AsyncSession,
    member_ids: Sequence[str],
    *,
    ensure_team: str | None = None,
    vtime: float = 0.0,
) -> dict[str, MemberStateRow]:
    """State rows of these members; with ``ensure_team`` missing rows are created,
    starting at the team's virtual time (a new member gets no catch-up burst)."""
    query = (
        select(MemberStateRow)
        .where(MemberStateRow.member_id.in_(member_ids))
        .execution_options(populate_existing=True)
    )
    found = {r.member_id: r for r in (await session.scalars(query)).all()}
    missing = [m for m in member_ids if m not in found]
    if ensure_team is not None and missing:
        stmt = insert_for(session)(MemberStateRow).values(
            [
                {
                    "member_id": m,
                    "team_id": ensure_team,
                    "virtual_pass": vtime,
                    "open_leads": 0,
                    "assigned": 0,
                }
                for m in missing
            ]
        )
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["member_id"]))
        found = {r.member_id: r for r in (await session.scalars(query)).all()}
    return found


async def take_turn(
    session: AsyncSession, team_id: str, member_id: str, new_pass: float, new_vtime: float
) -> int:
    """Record the chosen member's turn; returns their open leads after it."""
    result = await session.execute(
        update(MemberStateRow)
        .where(MemberStateRow.member_id == member_id)
        .values(
            virtual_pass=new_pass,
            assigned=MemberStateRow.assigned + 1,
            open_leads=MemberStateRow.open_leads + 1,
        )
        .returning(MemberStateRow.open_leads)
    )
    await session.execute(
        update(TeamStateRow).where(TeamStateRow.team_id == team_id).values(vtime=new_vtime)
    )
    return int(result.scalar_one())


async def add_open(session: AsyncSession, member_id: str, delta: int) -> int | None:
    """Move a member's open-lead count; returns it, or None for an unknown member (a CRM
    owner routing does not know)."""
    result = await session.execute(
        update(MemberStateRow)
        .where(MemberStateRow.member_id == member_id)
        .values(
            open_leads=case(
                (MemberStateRow.open_leads + delta < 0, 0),
                else_=MemberStateRow.open_leads + delta,
            )
        )
        .returning(MemberStateRow.open_leads)
    )
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
