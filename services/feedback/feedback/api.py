"""Thin HTTP routes: sales activities in; funnel facts out."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from feedback import recording, store
from feedback.domain.activities import Activity, Problem, attempts_owed, reason_catalogue
from feedback.metrics import FeedbackMetrics
from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext


class Queued(BaseModel):
    event_id: str
    type: str
    lead_id: str


class LeadFunnel(BaseModel):
    lead_id: str
    created_at: datetime | None
    source: str | None
    campaign: str | None
    owner: str | None
    mql_at: datetime | None
    first_contact_at: datetime | None
    sql_at: datetime | None
    rejected_at: datetime | None
    reject_reason: str | None
    won_at: datetime | None
    lost_at: datetime | None
    amount: Decimal | None
    recycled_at: datetime | None
    attempts_made: int
    attempts_owed: int | None
    channels_owed: int | None


_FACTS = (
    "created_at",
    "source",
    "campaign",
    "owner",
    "mql_at",
    "first_contact_at",
    "sql_at",
    "rejected_at",
    "reject_reason",
    "won_at",
    "lost_at",
    "amount",
    "recycled_at",
)


def problem_response(problem: Problem) -> JSONResponse:
    """A refused activity: 422 in FastAPI's validation shape, 409 with the plain message;
    both name the field and carry what the caller needs to fix it."""
    if problem.status == 422:
        detail: Any = [
            {"loc": ["body", problem.field], "msg": problem.message, "type": "value_error"}
        ]
    else:
        detail = problem.message
    return JSONResponse(
        {"detail": detail, "field": problem.field, **problem.extra}, status_code=problem.status
    )


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["activities"])
    read = [Depends(require_scope(ctx.settings, "activities:read"))]
    write = [Depends(require_scope(ctx.settings, "activities:write"))]
    metrics: FeedbackMetrics = ctx.extras["feedback_metrics"]

    @router.post(
        "/activities",
        status_code=202,
        dependencies=write,
        summary="Report a sales activity: contacted, accepted, rejected (with a contract "
        "reason), won or lost",
        responses={
            409: {"description": "no_response while the attempts clause is not met yet"},
            422: {"description": "A bad field; for reasons, the valid codes with labels"},
        },
    )
    async def post_activity(activity: Annotated[Activity, Body()]) -> Any:
        async with ctx.uow() as uow:
            result = await recording.record(uow, ctx.contracts, ctx.clock, metrics, activity)
            if isinstance(result, Problem):
                return problem_response(result)
            await uow.commit()
        recording.count(metrics, result, "api")
        return Queued(
            event_id=result.event.id, type=result.event.topic, lead_id=result.event.subject
        )

    @router.get(
        "/rejection-reasons",
        summary="The contract's rejection reasons (en/es labels)",
        dependencies=read,
    )
    async def rejection_reasons() -> dict[str, Any]:
        contract = ctx.contracts.current(ctx.clock.now().date())
        return {"contract_version": contract.version, "reasons": reason_catalogue(contract)}

    @router.get(
        "/leads/{lead_id}",
        summary="A lead's funnel facts and the attempts still owed",
        dependencies=read,
        responses={404: {"description": "feedback has seen no event of this lead"}},
    )
    async def lead_funnel(lead_id: str = Path(max_length=64, pattern=r"^[^\x00]*$")) -> LeadFunnel:
        async with ctx.uow() as uow:
            row = await store.lead(uow.session, lead_id)
            ledger = await store.attempts_of(uow.session, lead_id)
            if row is None and not ledger:
                raise HTTPException(404, f"lead_id {lead_id!r}: no funnel event seen for this lead")
            contract = recording.contract_for(ctx.contracts, row, ctx.clock)
            mql_at = row.mql_at if row else None
            owed = attempts_owed(contract.attempts, mql_at, ledger) if contract.attempts else None
            facts = {c: getattr(row, c) for c in _FACTS} if row is not None else {}
        return LeadFunnel(
            lead_id=lead_id,
            **{c: facts.get(c) for c in _FACTS},
            attempts_made=len(ledger),
            attempts_owed=owed.attempts if owed else None,
            channels_owed=owed.channels if owed else None,
        )

    return router
