"""Thin routes over the funnel: KPIs, the TOFU/MOFU/BOFU table, cohorts and ad spend."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse

from feedback import store
from feedback.domain.attribution import Model, Touch, attribute, bonus, by_campaign
from feedback.domain.funnel import GroupBy, Targets, cohorts, kpis, stages
from feedback.domain.spend import SpendBatch, SpendItem, parse_csv
from feedback.period import Period, period
from leadpact.apikeys import require_scope
from leadpact.contract import Contract
from leadpact.service import ServiceContext

MAX_CSV_BYTES = 10 * 1024 * 1024


def targets_of(contract: Contract) -> Targets:
    return Targets(
        monthly_mql_target=contract.volume.monthly_mql_target if contract.volume else None,
        marketing_share_target=(
            contract.revenue.marketing_share_target if contract.revenue else None
        ),
    )


async def kpi_report(ctx: ServiceContext, p: Period, group_by: GroupBy | None) -> dict[str, Any]:
    """The KPI document for a period (also read by the weekly report)."""
    async with ctx.uow() as uow:
        facts = await store.facts_between(uow.session, p.start, p.end)
        spend = await store.spend_facts(uow.session, p.first_day, p.end_day)
    contract = ctx.contracts.current(p.first_day)
    report = kpis(facts, spend, p.start, p.end, group_by, targets_of(contract))
    report["contract_version"] = contract.version
    return report


def _items(items: list[SpendItem]) -> list[dict[str, Any]]:
    return [i.model_dump() for i in items]


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["funnel"])
    funnel = [Depends(require_scope(ctx.settings, "funnel:read"))]
    spend_read = [Depends(require_scope(ctx.settings, "spend:read"))]
    spend_write = [Depends(require_scope(ctx.settings, "spend:write"))]

    @router.get(
        "/kpis",
        summary="Funnel KPIs of the MQLs of a period, optionally grouped",
        dependencies=funnel,
    )
    async def get_kpis(
        p: Annotated[Period, Depends(period)],
        group_by: Annotated[GroupBy | None, Query(description="one block per group")] = None,
    ) -> dict[str, Any]:
        return await kpi_report(ctx, p, group_by)

    @router.get(
        "/funnel",
        summary="TOFU / MOFU / BOFU: each step counted in the period",
        dependencies=funnel,
    )
    async def get_funnel(p: Annotated[Period, Depends(period)]) -> dict[str, Any]:
        async with ctx.uow() as uow:
            facts = await store.facts_between(uow.session, p.start, p.end)
        return {"from": p.start, "to": p.end, "stages": stages(facts, p.start, p.end)}

    @router.get(
        "/cohorts",
        summary="MQL cohorts by month: conversion to customer over time",
        dependencies=funnel,
    )
    async def get_cohorts(p: Annotated[Period, Depends(period)]) -> dict[str, Any]:
        async with ctx.uow() as uow:
            facts = await store.facts_between(uow.session, p.start, p.end)
        return {
            "from": p.start,
            "to": p.end,
            "cohorts": cohorts(facts, p.start, p.end, ctx.clock.now()),
        }

    @router.post(
        "/spend",
        status_code=202,
        summary="Post ad spend per day, source and campaign (a repeated day replaces it)",
        dependencies=spend_write,
    )
    async def post_spend(batch: Annotated[SpendBatch, Body()]) -> dict[str, int]:
        async with ctx.uow() as uow:
            await store.upsert_spend(uow.session, _items(batch.items))
            await uow.commit()
        return {"rows": len(batch.items)}

    @router.post(
        "/spend/import",
        status_code=202,
        summary="Import ad spend as CSV: day,source,campaign,amount[,currency]",
        dependencies=spend_write,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
        responses={422: {"description": "Bad rows, each named by line and column"}},
    )
    async def import_spend(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_CSV_BYTES:
            return JSONResponse({"detail": "body: CSV larger than 10 MiB"}, status_code=413)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": "not UTF-8 text", "type": "value_error"}]},
                status_code=422,
            )
        items, errors = parse_csv(text)
        if errors:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body", f"line {e.line}", e.column],
                            "msg": f"line {e.line}, {e.column}: {e.message}",
                            "type": "value_error",
                        }
                        for e in errors[:100]
                    ]
                },
                status_code=422,
            )
        async with ctx.uow() as uow:
            await store.upsert_spend(uow.session, _items(items))
            await uow.commit()
        return {"rows": len(items)}

    @router.get("/spend", summary="Ad spend of a period", dependencies=spend_read)
    async def get_spend(p: Annotated[Period, Depends(period)]) -> dict[str, Any]:
        async with ctx.uow() as uow:
            rows = await store.spend_between(uow.session, p.first_day, p.end_day)
            items = [
                {
                    "day": r.day,
                    "source": r.source,
                    "campaign": r.campaign,
                    "amount": r.amount,
                    "currency": r.currency,
                }
                for r in rows
            ]
        return {"items": items}

    return router


def build_attribution_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1",
        tags=["attribution"],
        dependencies=[Depends(require_scope(ctx.settings, "funnel:read"))],
    )

    async def attributed(p: Period, model: Model | None) -> tuple[Model, list[dict[str, Any]]]:
        contract = ctx.contracts.current(p.first_day)
        chosen: Model = model or (contract.revenue.attribution if contract.revenue else "w_shaped")
        async with ctx.uow() as uow:
            facts = await store.facts_between(uow.session, p.start, p.end)
            won = [f for f in facts if f.won_at is not None]
            raw = await store.touches_of(uow.session, [f.lead_id for f in won])
        touches = {k: [Touch(at, kind, c) for at, kind, c in v] for k, v in raw.items()}
        return chosen, attribute(won, touches, p.start, p.end, chosen)

    @router.get("/attribution", summary="Won revenue of a period credited to campaigns")
    async def get_attribution(
        p: Annotated[Period, Depends(period)],
        model: Annotated[
            Model | None, Query(description="default: the contract's revenue.attribution")
        ] = None,
    ) -> dict[str, Any]:
        chosen, rows = await attributed(p, model)
        return {
            "from": p.start,
            "to": p.end,
            "model": chosen,
            "revenue": round(sum(r["revenue"] for r in rows), 2),
            "campaigns": by_campaign(rows),
            "by_month": rows,
        }

    @router.get("/bonus", summary="Marketing bonus per month and campaign")
    async def get_bonus(p: Annotated[Period, Depends(period)]) -> dict[str, Any]:
        contract = ctx.contracts.current(p.first_day)
        rate = contract.revenue.bonus_rate if contract.revenue else 0.0
        chosen, rows = await attributed(p, None)
        found = bonus(rows, rate)
        return {
            "from": p.start,
            "to": p.end,
            "model": chosen,
            "bonus_rate": rate,
            "contract_version": contract.version,
            "total_bonus": round(sum(r["bonus"] for r in found), 2),
            "rows": found,
        }

    return router
