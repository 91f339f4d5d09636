"""Bootstrap: crm-sync described once, wired by ``leadpact.service``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crm_sync.api import build_router
from crm_sync.handlers import (
    on_deal_closed,
    on_lead_created,
    on_leads_created,
    on_sales_activity,
)
from crm_sync.runtime import runtime
from leadpact.events import (
    DealClosed,
    EventData,
    LeadAccepted,
    LeadContacted,
    LeadCreated,
    LeadRejected,
)
from leadpact.service import HandlerFunction, ServiceContext, ServiceDefinition, Worker

EVENT_HANDLERS: dict[type[EventData], HandlerFunction] = {
    LeadCreated: on_lead_created,
    DealClosed: on_deal_closed,
    LeadContacted: on_sales_activity,
    LeadAccepted: on_sales_activity,
    LeadRejected: on_sales_activity,
}

BATCH_HANDLERS: dict[type[EventData], HandlerFunction] = {LeadCreated: on_leads_created}


async def _setup(ctx: ServiceContext) -> None:
    runtime(ctx)


def _workers(ctx: ServiceContext) -> Sequence[Worker]:
    return [runtime(ctx).sync]


SERVICE = ServiceDefinition(
    name="crm-sync",
    title="crm-sync",
    default_port=8005,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    batch_handlers=BATCH_HANDLERS,
    routers=lambda ctx: [build_router(ctx)],
    workers=_workers,
    setup=_setup,
    description="Keeps one golden customer record from lead, deal, billing and CRM data: "
    "entity resolution, survivorship with provenance, conflicts, offers, outbound sync and "
    "erasure.",
)
