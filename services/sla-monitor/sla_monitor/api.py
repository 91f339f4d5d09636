"""Thin HTTP routes over the deadline store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from leadpact.apikeys import require_scope
from leadpact.events import Clause
from leadpact.service import ServiceContext
from sla_monitor import store
from sla_monitor.domain import CLAUSE_TEAM, answerable_team, late_seconds


class ClauseStatus(BaseModel):
    clause: str
    due_at: datetime
    status: str
    resolved_at: datetime | None


class LeadSla(BaseModel):
    lead_id: str
    clauses: list[ClauseStatus]


class Breach(BaseModel):
    lead_id: str
    clause: str
    team: str
    owner: str | None
    source: str | None
    deadline: datetime
    detected_at: datetime
    late_seconds: float


class BreachLog(BaseModel):
    breaches: list[Breach]


class ClauseCompliance(BaseModel):
    clause: str
    team: str
    armed: int
    met: int
    breached: int
    open: int
    compliance: float | None = Field(
        description="met / (met + breached); null while nothing is decided"
    )


class Compliance(BaseModel):
    since: datetime
    until: datetime
    clauses: list[ClauseCompliance]


def _compliance(
    counts: list[tuple[str, str, str, int]], team: str | None
) -> list[ClauseCompliance]:
    """One line per clause and answering team; a clause nobody was held to yet shows up
    with the team that answers for it by default, all zeros."""
    pairs = {(clause, owner) for clause, owner, _, _ in counts}
    pairs |= {
        (clause, owner)
        for clause, owner in CLAUSE_TEAM.items()
        if clause not in {c for c, _ in pairs}
    }
    found = []
    for clause, owner in sorted(pairs, key=lambda p: (list(CLAUSE_TEAM).index(p[0]), p[1])):
        if team is not None and owner != team:
            continue
        by_status = {status: n for c, t, status, n in counts if (c, t) == (clause, owner)}
        met, breached = by_status.get(store.MET, 0), by_status.get(store.BREACHED, 0)
        decided = met + breached
        found.append(
            ClauseCompliance(
                clause=clause,
                team=owner,
                armed=sum(by_status.values()),
                met=met,
                breached=breached,
                open=by_status.get(store.OPEN, 0),
                compliance=met / decided if decided else None,
            )
        )
    return found


def _breach(row: store.DeadlineRow) -> Breach:
    detected = row.resolved_at or row.due_at
    return Breach(
        lead_id=row.lead_id,
        clause=row.clause,
        team=answerable_team(row.clause, row.team),
        owner=row.owner,
        source=row.source,
        deadline=row.due_at,
        detected_at=detected,
        late_seconds=late_seconds(row.due_at, detected),
    )


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1",
        tags=["sla"],
        dependencies=[Depends(require_scope(ctx.settings, "sla:read"))],
    )

    @router.get(
        "/leads/{lead_id}/sla",
        summary="The SLA clauses armed for a lead and where each stands",
        responses={404: {"description": "No deadline was ever armed for this lead"}},
    )
    async def lead_sla(lead_id: str = Path(max_length=64)) -> LeadSla:
        async with ctx.uow() as uow:
            rows = await store.lead_deadlines(uow.session, lead_id)
            found = [
                ClauseStatus(
                    clause=r.clause, due_at=r.due_at, status=r.status, resolved_at=r.resolved_at
                )
                for r in rows
            ]
        if not found:
            raise HTTPException(404, f"lead_id {lead_id!r}: no SLA deadline armed for this lead")
        return LeadSla(lead_id=lead_id, clauses=found)

    @router.get("/breaches", summary="The breach log, oldest detection first")
    async def breach_log(
        since: Annotated[
            AwareDatetime | None, Query(description="only breaches detected at or after")
        ] = None,
        clause: Annotated[Clause | None, Query(description="only this clause")] = None,
        team: Annotated[
            str | None,
            Query(max_length=100, description="only breaches held against this team (the owner's)"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> BreachLog:
        clauses = list(CLAUSE_TEAM) if clause is None else [clause]
        async with ctx.uow() as uow:
            rows = await store.breaches(uow.session, since, clauses, limit, team)
            return BreachLog(breaches=[_breach(r) for r in rows])

    @router.get(
        "/compliance",
        summary="SLA compliance per clause and team for the MQLs of a period",
    )
    async def compliance(
        since: Annotated[AwareDatetime, Query(description="MQLs from this instant")],
        until: Annotated[
            AwareDatetime | None, Query(description="MQLs before this instant (default now)")
        ] = None,
        team: Annotated[str | None, Query(max_length=100)] = None,
    ) -> Compliance:
        end = until or ctx.clock.now()
        if end <= since:
            raise HTTPException(422, "until: must be after since")
        async with ctx.uow() as uow:
            counts = await store.status_counts(uow.session, since, end)
        return Compliance(since=since, until=end, clauses=_compliance(counts, team))

    return router
