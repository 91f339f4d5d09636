"""Bootstrap: crm-sync described once, wired by ``leadpact.service``."""

from __future__ import annotations

from pathlib import Path

from crm_sync.api import build_router
from crm_sync.handlers import on_deal_closed, on_lead_created, on_sales_activity
from leadpact.consumer import EventHandler
from leadpact.events import (
    DealClosed,
    EventData,
    LeadAccepted,
    LeadContacted,
    LeadCreated,
    LeadRejected,
)
from leadpact.service import ServiceDefinition

EVENT_HANDLERS: dict[type[EventData], EventHandler] = {
    LeadCreated: on_lead_created,
    DealClosed: on_deal_closed,
    LeadContacted: on_sales_activity,
    LeadAccepted: on_sales_activity,
    LeadRejected: on_sales_activity,
}

SERVICE = ServiceDefinition(
    name="crm-sync",
    title="crm-sync",
    default_port=8005,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    routers=lambda ctx: [build_router(ctx)],
    description="Keeps one golden customer record from lead, deal and billing events.",
)
