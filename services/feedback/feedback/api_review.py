"""The quarterly contract review: JSON under /v1/reviews, a page (HTML or CSV) under
/reports. Thin: the store loads the facts, ``feedback.domain.review`` judges."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from feedback import store
from feedback.domain.review import Terms, parse_quarter, review
from feedback.domain.review_report import render_csv, render_html
from feedback.settings import FeedbackSettings
from leadpact.apikeys import require_scope
from leadpact.contract import Contract
from leadpact.service import ServiceContext

QUARTER = Query(max_length=10, description="a quarter, e.g. 2026-Q4 (UTC)")


def terms_of(contract: Contract, settings: FeedbackSettings) -> Terms:
    return Terms(
        version=contract.version,
        first_contact_within=contract.response.first_contact_within,
        attempts_within=contract.attempts.within if contract.attempts else None,
        min_attempts=contract.attempts.min_attempts if contract.attempts else None,
        decide_within=contract.outcome.decide_within if contract.outcome else None,
        monthly_mql_target=contract.volume.monthly_mql_target if contract.volume else None,
        marketing_share_target=(
            contract.revenue.marketing_share_target if contract.revenue else None
        ),
        threshold_points=contract.mql.threshold_points,
        compliance_target=settings.review_compliance_target,
        conversion_floor=settings.review_conversion_floor,
        threshold_metric=settings.review_threshold_metric,
    )


async def quarterly_review(ctx: ServiceContext, quarter: str) -> dict[str, Any]:
    try:
        start, end = parse_quarter(quarter)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    async with ctx.uow() as uow:
        facts = await store.facts_between(uow.session, start, end)
    contract = ctx.contracts.current(start.date())
    terms = terms_of(contract, ctx.extras["feedback_settings"])
    return review(quarter.strip(), facts, start, end, ctx.clock.now(), terms)


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(
        tags=["reports"], dependencies=[Depends(require_scope(ctx.settings, "funnel:read"))]
    )

    @router.get(
        "/v1/reviews/quarterly",
        summary="Quarterly contract review: each clause met or not, conversion by score decile "
        "and a suggested MQL threshold",
    )
    async def get_review(quarter: Annotated[str, QUARTER]) -> dict[str, Any]:
        return await quarterly_review(ctx, quarter)

    @router.get(
        "/reports/quarterly",
        summary="The quarterly contract review as a page (HTML) or CSV",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def quarterly_page(
        quarter: Annotated[str, QUARTER],
        format: Annotated[Literal["html", "csv"], Query()] = "html",
    ) -> Response:
        doc = await quarterly_review(ctx, quarter)
        if format == "csv":
            name = f"review-{doc['quarter']}.csv"
            return PlainTextResponse(
                render_csv(doc),
                media_type="text/csv",
                headers={"content-disposition": f'attachment; filename="{name}"'},
            )
        return HTMLResponse(render_html(doc))

    return router
