"""Bootstrap: the sla-monitor described once, wired by ``leadpact.service``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from leadpact.events import (
    EventData,
    LeadAccepted,
    LeadAssigned,
    LeadContacted,
    LeadCreated,
    LeadRejected,
    LeadScored,
)
from leadpact.service import HandlerFunction, ServiceContext, ServiceDefinition, Worker
from sla_monitor.api import build_router
from sla_monitor.handlers import (
    on_lead_accepted,
    on_lead_contacted,
    on_lead_rejected,
    on_lead_scored,
    on_leads_scored,
)
from sla_monitor.metrics import SlaMetrics
from sla_monitor.notify.api import build_router as build_notify_router
from sla_monitor.notify.queue import Notifier
from sla_monitor.notify.worker import NotificationWorker
from sla_monitor.routing.api import build_router as build_routing_router
from sla_monitor.routing.escalation import Escalator
from sla_monitor.routing.handlers import on_lead_assigned, on_lead_created, on_leads_created
from sla_monitor.routing.metrics import RoutingMetrics
from sla_monitor.settings import NotifySettings, SlaSettings
from sla_monitor.watch import DeadlineWatch

EVENT_HANDLERS: dict[type[EventData], HandlerFunction] = {
    LeadScored: on_lead_scored,
    LeadContacted: on_lead_contacted,
    LeadAccepted: on_lead_accepted,
    LeadRejected: on_lead_rejected,
    LeadCreated: on_lead_created,
    LeadAssigned: on_lead_assigned,
}

BATCH_HANDLERS: dict[type[EventData], HandlerFunction] = {
    LeadScored: on_leads_scored,
    LeadCreated: on_leads_created,
}
"""Topics whose consumer batches go to one call (same effect as each event in turn)."""


def _watch(ctx: ServiceContext) -> DeadlineWatch:
    """The service's collaborators, made once per context on first use: metrics, the
    notifier and its worker, the escalator, and the deadline watch that calls it."""
    if "deadline_watch" not in ctx.extras:
        metrics = SlaMetrics(ctx.metrics.registry)
        ctx.extras["sla_metrics"] = metrics
        routing_metrics = RoutingMetrics(ctx.metrics.registry)
        ctx.extras["routing_metrics"] = routing_metrics
        notify_settings = NotifySettings()
        notifier = Notifier(notify_settings)
        ctx.extras["notifier"] = notifier
        ctx.extras["notification_worker"] = NotificationWorker(
            ctx.uow, ctx.clock, notify_settings, notifier
        )
        escalator = Escalator(ctx.contracts, notifier, routing_metrics)
        ctx.extras["escalator"] = escalator
        tuning = SlaSettings()
        ctx.extras["deadline_watch"] = DeadlineWatch(
            ctx.uow,
            ctx.clock,
            metrics,
            horizon=timedelta(seconds=tuning.horizon_seconds),
            batch=tuning.batch,
            escalator=escalator,
            # Nothing owned until the consumer group assigns lead.scored partitions
            # (embedded: the single member gets them all at subscription).
            partitions=set(),
        )
        ctx.extras["on_assigned"] = ctx.extras["deadline_watch"].partitions_assigned
        ctx.extras["on_revoked"] = ctx.extras["deadline_watch"].partitions_revoked
    watch: DeadlineWatch = ctx.extras["deadline_watch"]
    return watch


async def _setup(ctx: ServiceContext) -> None:
    _watch(ctx)


def _workers(ctx: ServiceContext) -> Sequence[Worker]:
    return [_watch(ctx), ctx.extras["notification_worker"]]


SERVICE = ServiceDefinition(
    name="sla-monitor",
    title="sla-monitor",
    default_port=8003,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    batch_handlers=BATCH_HANDLERS,
    routers=lambda ctx: [
        build_router(ctx),
        build_routing_router(ctx),
        build_notify_router(ctx),
    ],
    workers=_workers,
    setup=_setup,
    description="Gives every MQL an owner by the contract's routing rules, arms the "
    "contract's deadlines for it (first contact, in business hours when the contract says "
    "so), tells the owner, and emits `sla.breached` exactly once when one passes.",
)
