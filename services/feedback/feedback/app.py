"""Bootstrap: feedback described once, wired by ``leadpact.service``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter

from feedback import api, api_funnel, api_reports, api_review, api_webhooks, handlers
from feedback.domain.webhooks import load_status_map
from feedback.metrics import FeedbackMetrics
from feedback.recycle import RecycleWorker
from feedback.settings import FeedbackSettings
from leadpact.events import (
    DealClosed,
    EventData,
    LeadAccepted,
    LeadActivity,
    LeadAssigned,
    LeadContacted,
    LeadCreated,
    LeadRecycled,
    LeadRejected,
    LeadScored,
    PrivacyErased,
    SlaBreached,
)
from leadpact.service import HandlerFunction, ServiceContext, ServiceDefinition, Worker

EVENT_HANDLERS: dict[type[EventData], HandlerFunction] = {
    LeadCreated: handlers.on_lead_created,
    LeadActivity: handlers.on_lead_activity,
    LeadScored: handlers.on_lead_scored,
    LeadAssigned: handlers.on_lead_assigned,
    LeadContacted: handlers.on_lead_contacted,
    LeadAccepted: handlers.on_lead_accepted,
    LeadRejected: handlers.on_lead_rejected,
    LeadRecycled: handlers.on_lead_recycled,
    DealClosed: handlers.on_deal_closed,
    SlaBreached: handlers.on_sla_breached,
    PrivacyErased: handlers.on_privacy_erased,
}

BATCH_HANDLERS: dict[type[EventData], HandlerFunction] = {
    LeadCreated: handlers.on_leads_created,
    LeadScored: handlers.on_leads_scored,
    LeadAssigned: handlers.on_leads_assigned,
    LeadContacted: handlers.on_leads_contacted,
    LeadAccepted: handlers.on_leads_accepted,
    LeadRejected: handlers.on_leads_rejected,
}


def _prepare(ctx: ServiceContext) -> None:
    """Metrics, settings and the recycle worker, made once per context on first use."""
    if "recycle_worker" in ctx.extras:
        return
    settings = FeedbackSettings()
    metrics = FeedbackMetrics(ctx.metrics.registry)
    ctx.extras["feedback_settings"] = settings
    ctx.extras["feedback_metrics"] = metrics
    ctx.extras["status_map"] = load_status_map(settings.status_map_path)
    ctx.extras["recycle_worker"] = RecycleWorker(
        ctx.uow,
        ctx.clock,
        metrics,
        horizon=timedelta(seconds=settings.recycle_horizon_seconds),
        batch=settings.recycle_batch,
    )


async def _setup(ctx: ServiceContext) -> None:
    _prepare(ctx)


def _routers(ctx: ServiceContext) -> Sequence[APIRouter]:
    _prepare(ctx)
    return [
        api.build_router(ctx),
        api_funnel.build_router(ctx),
        api_funnel.build_attribution_router(ctx),
        api_webhooks.build_router(ctx),
        api_reports.build_router(ctx),
        api_review.build_router(ctx),
    ]


def _workers(ctx: ServiceContext) -> Sequence[Worker]:
    _prepare(ctx)
    return [ctx.extras["recycle_worker"]]


SERVICE = ServiceDefinition(
    name="feedback",
    title="feedback",
    default_port=8004,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    batch_handlers=BATCH_HANDLERS,
    routers=_routers,
    workers=_workers,
    setup=_setup,
    description="Sales activity back from the CRM, rejection reasons enforced by the "
    "contract, recycles, funnel KPIs, attribution, marketing bonus and the weekly report.",
)
