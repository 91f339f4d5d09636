"""The weekly smarketing review page, as HTML (inline SVG charts) or CSV."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from feedback import store
from feedback.api_funnel import kpi_report
from feedback.domain.activities import reason_catalogue
from feedback.domain.report import (
    daily,
    parse_week,
    render_csv,
    render_html,
    week_bounds,
    weekly,
)
from feedback.period import make_period
from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(
        prefix="/reports",
        tags=["reports"],
        dependencies=[Depends(require_scope(ctx.settings, "funnel:read"))],
    )

    @router.get(
        "/weekly",
        summary="The weekly smarketing review: MQLs, SQLs, conversion, SLA, rejection reasons",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def weekly_report(
        week: Annotated[str, Query(max_length=10, description="ISO week, e.g. 2026-W47")],
        format: Annotated[Literal["html", "csv"], Query()] = "html",
    ) -> Response:
        try:
            monday = parse_week(week)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        start, end = week_bounds(monday)
        p = make_period(start.date(), end.date())
        kpis = await kpi_report(ctx, p, None)
        async with ctx.uow() as uow:
            facts = await store.facts_between(uow.session, start, end)
        contract = ctx.contracts.current(monday)
        labels = {r["code"]: r["label"]["en"] for r in reason_catalogue(contract)}
        report = weekly(week.strip(), kpis, daily(facts, start), labels)
        if format == "csv":
            return PlainTextResponse(
                render_csv(report),
                media_type="text/csv",
                headers={"content-disposition": f'attachment; filename="weekly-{week}.csv"'},
            )
        return HTMLResponse(render_html(report))

    return router
