"""Scoring's HTTP routes: thin; the work is in ``store`` and ``domain``."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext
from scoring import store
from scoring.runtime import runtime


class ScoreView(BaseModel):
    points: int
    probability: float | None
    tier: str
    reasons: list[str]
    model_version: str | None
    contract_version: str
    trigger: str
    announced: bool
    scored_at: datetime


class LeadScoreView(BaseModel):
    lead_id: str
    points: int
    probability: float | None
    tier: str
    reasons: list[str]
    model_version: str | None
    contract_version: str
    scored_at: datetime
    history: list[ScoreView]


def _view(row: store.ScoreRow) -> ScoreView:
    return ScoreView(
        points=row.points,
        probability=row.probability,
        tier=row.tier,
        reasons=list(row.reasons),
        model_version=row.model_version,
        contract_version=row.contract_version,
        trigger=row.trigger,
        announced=row.announced,
        scored_at=row.scored_at,
    )


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1",
        tags=["scores"],
        dependencies=[Depends(require_scope(ctx.settings, "scores:read"))],
    )
    parts = runtime(ctx)

    @router.get(
        "/scores/{lead_id}",
        response_model=LeadScoreView,
        responses={404: {"description": "No score for this lead id"}},
    )
    async def get_score(lead_id: str) -> LeadScoreView:
        """The lead's current score (the latest), its reasons, and its history, newest first."""
        async with ctx.db.session() as session:
            rows = await store.history(session, lead_id, parts.settings.history_limit)
        if not rows:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"lead_id: no score for lead {lead_id!r}"
            )
        current = _view(rows[0])
        return LeadScoreView(
            lead_id=lead_id,
            points=current.points,
            probability=current.probability,
            tier=current.tier,
            reasons=current.reasons,
            model_version=current.model_version,
            contract_version=current.contract_version,
            scored_at=current.scored_at,
            history=[_view(r) for r in rows],
        )

    return router
