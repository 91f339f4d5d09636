"""Bootstrap: the scoring service described once, wired by ``leadpact.service``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter

from leadpact.events import (
    DealClosed,
    EventData,
    LeadAccepted,
    LeadActivity,
    LeadCreated,
    LeadRejected,
    PrivacyErased,
)
from leadpact.service import HandlerFunction, ServiceContext, ServiceDefinition, Worker
from scoring.api import build_router
from scoring.handlers import (
    on_deal_closed,
    on_lead_accepted,
    on_lead_activity,
    on_lead_created,
    on_lead_rejected,
    on_leads_created,
    on_privacy_erased,
)
from scoring.models_api import build_models_router
from scoring.retraining import Retrainer
from scoring.runtime import runtime

EVENT_HANDLERS: dict[type[EventData], HandlerFunction] = {
    LeadCreated: on_lead_created,
    LeadActivity: on_lead_activity,
    LeadAccepted: on_lead_accepted,
    LeadRejected: on_lead_rejected,
    DealClosed: on_deal_closed,
    PrivacyErased: on_privacy_erased,
}
# lead.created arrives once per lead, in batches under load: one statement per step and one
# model call for a batch's leads (notes/issue-9-scoring-batch.md).
BATCH_HANDLERS: dict[type[EventData], HandlerFunction] = {LeadCreated: on_leads_created}


def retrainer(ctx: ServiceContext) -> Retrainer:
    found = ctx.extras.get("retrainer")
    if not isinstance(found, Retrainer):
        found = ctx.extras["retrainer"] = Retrainer(ctx, runtime(ctx))
    return found


async def _setup(ctx: ServiceContext) -> None:
    runtime(ctx)


def _routers(ctx: ServiceContext) -> Sequence[APIRouter]:
    return [build_router(ctx), build_models_router(ctx, retrainer(ctx))]


def _workers(ctx: ServiceContext) -> Sequence[Worker]:
    return [retrainer(ctx)]


SERVICE = ServiceDefinition(
    name="scoring",
    title="scoring",
    default_port=8002,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    batch_handlers=BATCH_HANDLERS,
    routers=_routers,
    workers=_workers,
    setup=_setup,
    description="Scores every lead from the contract's MQL rules and, once trained, a "
    "calibrated LightGBM model; decides its tier and emits `lead.scored`. Learns from "
    "`lead.accepted`, `lead.rejected` and `deal.closed`.",
)
