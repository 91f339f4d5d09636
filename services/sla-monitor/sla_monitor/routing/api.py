"""Thin HTTP routes: teams and members (availability, capacity, load) and a lead's owner."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from leadpact.apikeys import require_scope
from leadpact.contract import Routing, RoutingMember, RoutingTeam, WorkingHours
from leadpact.service import ServiceContext
from sla_monitor import store as deadlines
from sla_monitor.routing import assign, store
from sla_monitor.routing.metrics import RoutingMetrics

MEMBER_ID = Path(max_length=100, description="member id from the contract's routing section")
TEAM_ID = Path(max_length=100, description="team id from the contract's routing section")


class MemberView(BaseModel):
    id: str
    team: str
    name: str | None
    email: str | None
    share: float
    timezone: str
    hours: WorkingHours | None
    capacity: int | None
    away_from: datetime | None
    away_to: datetime | None
    open_leads: int
    assigned: int
    available: bool
    unavailable: str | None = Field(description="out_of_hours, away or at_capacity")
    updated_at: datetime | None
    updated_by: str | None


class TeamView(BaseModel):
    id: str
    name: str | None
    manager: str | None
    members: list[MemberView]


class Teams(BaseModel):
    contract_version: str
    fallback_team: str
    teams: list[TeamView]


class MemberUpdate(BaseModel):
    """Only the fields sent change; ``null`` clears (hours: always available, capacity: no
    cap, away dates: not away). Takes effect for the next assignment."""

    model_config = ConfigDict(extra="forbid")
    share: float | None = Field(None, gt=0, le=1000)
    timezone: str | None = None
    hours: WorkingHours | None = None
    capacity: int | None = Field(None, ge=1)
    away_from: AwareDatetime | None = None
    away_to: AwareDatetime | None = None
    by: str | None = Field(None, max_length=200, description="who made the change")


class TeamMemberUpdate(MemberUpdate):
    id: str = Field(max_length=100)


class TeamUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: list[TeamMemberUpdate] = Field(min_length=1)
    by: str | None = Field(None, max_length=200)


class MemberLoad(BaseModel):
    id: str
    share: float
    expected_share: float = Field(description="share / sum of the team's shares")
    actual_share: float | None = Field(description="assigned / team's assigned")
    assigned: int
    open_leads: int
    capacity: int | None
    utilisation: float | None = Field(description="open_leads / capacity")
    available: bool


class TeamLoad(BaseModel):
    team: str
    assigned: int
    open_leads: int
    members: list[MemberLoad]


class OwnerChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: str = Field(min_length=1, max_length=200, description="member id of the new owner")
    by: str = Field(min_length=1, max_length=200, description="who reassigns")
    why: str = Field(min_length=1, max_length=300, description="why")


class HistoryEntry(BaseModel):
    owner: str
    previous_owner: str | None
    team: str | None
    rule: str | None
    reason: str
    by: str | None
    why: str | None
    at: datetime


class DeadlineOwner(BaseModel):
    clause: str
    round: int
    owner: str | None
    due_at: datetime
    status: str


class LeadOwner(BaseModel):
    lead_id: str
    owner: str
    team: str | None
    rule: str | None
    reason: str
    routed_owner: str | None = Field(description="routing's pick when the CRM chose otherwise")
    status: str
    contract_version: str | None
    history: list[HistoryEntry]
    deadlines: list[DeadlineOwner]


def _unprocessable(exc: ValidationError, prefix: str) -> HTTPException:
    detail = [
        {"loc": [prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return HTTPException(422, detail)


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["routing"])
    # Who works when and who owns a lead: reading it is management data, changing it moves
    # leads between people.
    read = [Depends(require_scope(ctx.settings, "routing:read"))]
    write = [Depends(require_scope(ctx.settings, "routing:write"))]

    def routing() -> tuple[str, Routing]:
        contract = ctx.contracts.current(ctx.clock.now().date())
        if contract.routing is None:
            raise HTTPException(404, f"contract {contract.version}: has no routing section")
        return contract.version, contract.routing

    def member_of(routing_: Routing, member_id: str) -> tuple[RoutingTeam, RoutingMember]:
        found = routing_.member(member_id)
        if found is None:
            raise HTTPException(404, f"member_id {member_id!r}: not a member of any team")
        return found

    def view(
        team: RoutingTeam, member: RoutingMember, state: store.MemberStateRow | None
    ) -> MemberView:
        cand = assign.candidates(
            RoutingTeam(id=team.id, members=[member]), {member.id: state} if state else {}
        )[0]
        why = cand.unavailable(ctx.clock.now())
        eff = cand.member
        return MemberView(
            id=eff.id,
            team=team.id,
            name=eff.name,
            email=eff.email,
            share=eff.share,
            timezone=eff.timezone,
            hours=eff.hours,
            capacity=eff.capacity,
            away_from=cand.away_from,
            away_to=cand.away_to,
            open_leads=cand.open_leads,
            assigned=state.assigned if state else 0,
            available=why is None,
            unavailable=why,
            updated_at=state.updated_at if state else None,
            updated_by=state.updated_by if state else None,
        )

    async def team_view(team: RoutingTeam) -> TeamView:
        async with ctx.uow() as uow:  # built inside: the closing rollback expires rows
            states = await store.members(uow.session, [m.id for m in team.members])
            return TeamView(
                id=team.id,
                name=team.name,
                manager=team.manager.name if team.manager else None,
                members=[view(team, m, states.get(m.id)) for m in team.members],
            )

    async def update_member(
        team: RoutingTeam, member: RoutingMember, change: MemberUpdate, loc: str, by: str | None
    ) -> None:
        sent = change.model_fields_set - {"by", "id"}
        async with ctx.uow() as uow:
            states = await store.members(uow.session, [member.id])
            state = states.get(member.id)
            overrides: dict[str, Any] = dict(state.overrides or {}) if state else {}
            for name in sent & {"share", "timezone", "hours", "capacity"}:
                value = getattr(change, name)
                overrides[name] = (
                    value.model_dump(mode="json", by_alias=True)
                    if isinstance(value, BaseModel)
                    else value
                )
            try:  # the merged member must still be a valid contract member
                doc = member.model_dump(mode="json", by_alias=True, exclude_none=True)
                doc.update(overrides)
                RoutingMember.model_validate({k: v for k, v in doc.items() if v is not None})
            except ValidationError as exc:
                raise _unprocessable(exc, loc) from exc
            values: dict[str, Any] = {
                "overrides": overrides,
                "updated_at": ctx.clock.now(),
                "updated_by": change.by or by,
                "team_id": team.id,
            }
            for name in sent & {"away_from", "away_to"}:
                values[name] = getattr(change, name)
            away_from = values.get("away_from", state.away_from if state else None)
            away_to = values.get("away_to", state.away_to if state else None)
            if away_from is not None and away_to is not None and away_to <= away_from:
                raise HTTPException(
                    422, [{"loc": [loc, "away_to"], "msg": "must be after away_from"}]
                )
            await store.set_member(uow.session, member.id, values)
            await uow.commit()

    @router.get("/teams", summary="Teams, members and who is available now", dependencies=read)
    async def teams() -> Teams:
        version, routing_ = routing()
        return Teams(
            contract_version=version,
            fallback_team=routing_.fallback_team,
            teams=[await team_view(t) for t in routing_.teams],
        )

    @router.get("/teams/{team_id}", summary="One team and its members", dependencies=read)
    async def team(team_id: str = TEAM_ID) -> TeamView:
        _, routing_ = routing()
        found = routing_.team(team_id)
        if found is None:
            raise HTTPException(404, f"team_id {team_id!r}: no such team")
        return await team_view(found)

    @router.put(
        "/teams/{team_id}",
        summary="Change several members' settings at once",
        dependencies=write,
    )
    async def put_team(team_id: str = TEAM_ID, body: TeamUpdate = Body()) -> TeamView:
        _, routing_ = routing()
        found = routing_.team(team_id)
        if found is None:
            raise HTTPException(404, f"team_id {team_id!r}: no such team")
        by_id = {m.id: m for m in found.members}
        for i, change in enumerate(body.members):
            if change.id not in by_id:
                raise HTTPException(
                    422,
                    [
                        {
                            "loc": ["body", "members", i, "id"],
                            "msg": f"{change.id!r} is not a member of team {team_id!r}",
                        }
                    ],
                )
        for i, change in enumerate(body.members):
            await update_member(found, by_id[change.id], change, f"members.{i}", body.by)
        return await team_view(found)

    @router.get(
        "/members/{member_id}",
        summary="A member's settings, load and availability",
        dependencies=read,
    )
    async def member(member_id: str = MEMBER_ID) -> MemberView:
        _, routing_ = routing()
        team_, member_ = member_of(routing_, member_id)
        async with ctx.uow() as uow:
            states = await store.members(uow.session, [member_id])
            return view(team_, member_, states.get(member_id))

    @router.put(
        "/members/{member_id}",
        summary="Change working hours, away dates, capacity",
        dependencies=write,
    )
    async def put_member(member_id: str = MEMBER_ID, body: MemberUpdate = Body()) -> MemberView:
        _, routing_ = routing()
        team_, member_ = member_of(routing_, member_id)
        await update_member(team_, member_, body, "body", None)
        async with ctx.uow() as uow:
            states = await store.members(uow.session, [member_id])
            return view(team_, member_, states.get(member_id))

    @router.get(
        "/teams/{team_id}/load",
        summary="Assignments and open leads per member",
        dependencies=read,
    )
    async def load(team_id: str = TEAM_ID) -> TeamLoad:
        _, routing_ = routing()
        found = routing_.team(team_id)
        if found is None:
            raise HTTPException(404, f"team_id {team_id!r}: no such team")
        members_ = (await team_view(found)).members
        total_share = sum(m.share for m in members_)
        total = sum(m.assigned for m in members_)
        return TeamLoad(
            team=team_id,
            assigned=total,
            open_leads=sum(m.open_leads for m in members_),
            members=[
                MemberLoad(
                    id=m.id,
                    share=m.share,
                    expected_share=m.share / total_share,
                    actual_share=m.assigned / total if total else None,
                    assigned=m.assigned,
                    open_leads=m.open_leads,
                    capacity=m.capacity,
                    utilisation=m.open_leads / m.capacity if m.capacity else None,
                    available=m.available,
                )
                for m in members_
            ],
        )

    async def lead_owner(lead_id: str) -> LeadOwner:
        async with ctx.uow() as uow:
            current = await store.assignment(uow.session, lead_id)
            if current is None:
                raise HTTPException(404, f"lead_id {lead_id!r}: no owner assigned")
            past = await store.history(uow.session, lead_id)
            rows = await deadlines.lead_deadlines(uow.session, lead_id)
            return LeadOwner(
                lead_id=lead_id,
                owner=current.owner,
                team=current.team,
                rule=current.rule,
                reason=current.reason,
                routed_owner=current.routed_owner,
                status=current.status,
                contract_version=current.contract_version,
                history=[
                    HistoryEntry(
                        owner=h.owner,
                        previous_owner=h.previous_owner,
                        team=h.team,
                        rule=h.rule,
                        reason=h.reason,
                        by=h.by,
                        why=h.why,
                        at=h.at,
                    )
                    for h in past
                ],
                deadlines=[
                    DeadlineOwner(
                        clause=r.clause,
                        round=r.round,
                        owner=r.owner,
                        due_at=r.due_at,
                        status=r.status,
                    )
                    for r in rows
                ],
            )

    @router.get(
        "/leads/{lead_id}/owner",
        summary="A lead's owner, how it got there, and its deadlines' owners",
        dependencies=read,
        responses={404: {"description": "The lead has no owner"}},
    )
    async def get_owner(lead_id: Annotated[str, Path(max_length=64)]) -> LeadOwner:
        return await lead_owner(lead_id)

    @router.post(
        "/leads/{lead_id}/owner",
        summary="Reassign a lead (emits lead.assigned with who and why)",
        dependencies=write,
        responses={404: {"description": "The lead has no owner to change"}},
    )
    async def post_owner(
        lead_id: Annotated[str, Path(max_length=64)], body: OwnerChange
    ) -> LeadOwner:
        metrics: RoutingMetrics = ctx.extras["routing_metrics"]
        async with ctx.uow() as uow:
            current = await store.assignment(uow.session, lead_id)
            if current is None:
                raise HTTPException(404, f"lead_id {lead_id!r}: no owner assigned")
            contract = ctx.contracts.get(current.contract_version)
            routing_ = contract.routing or ctx.contracts.current().routing
            found = routing_.member(body.owner) if routing_ is not None else None
            if found is None:
                raise HTTPException(
                    422,
                    [
                        {
                            "loc": ["body", "owner"],
                            "msg": f"{body.owner!r} is not a member of any team",
                        }
                    ],
                )
            if body.owner != current.owner:
                changed = await assign.reassign(
                    uow,
                    ctx.clock.now(),
                    routing_,
                    current,
                    body.owner,
                    found[0].id,
                    metrics,
                    ctx.extras.get("notifier"),
                    reason="reassigned",
                    by=body.by,
                    why=body.why,
                )
                if not changed:
                    raise HTTPException(409, f"lead_id {lead_id!r}: its owner changed meanwhile")
                await uow.commit()
        return await lead_owner(lead_id)

    return router
