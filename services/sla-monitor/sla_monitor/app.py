"""Bootstrap: the sla-monitor described once, wired by ``leadpact.service``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from leadpact.consumer import EventHandler
from leadpact.events import EventData, LeadAccepted, LeadContacted, LeadRejected, LeadScored
from leadpact.service import ServiceContext, ServiceDefinition, Worker
from sla_monitor.api import build_router
from sla_monitor.handlers import (
    on_lead_accepted,
    on_lead_contacted,
    on_lead_rejected,
    on_lead_scored,
)
from sla_monitor.metrics import SlaMetrics
from sla_monitor.settings import SlaSettings
from sla_monitor.watch import DeadlineWatch

EVENT_HANDLERS: dict[type[EventData], EventHandler] = {
    LeadScored: on_lead_scored,  # type: ignore[dict-item]
    LeadContacted: on_lead_contacted,  # type: ignore[dict-item]
    LeadAccepted: on_lead_accepted,  # type: ignore[dict-item]
    LeadRejected: on_lead_rejected,  # type: ignore[dict-item]
}


def _watch(ctx: ServiceContext) -> DeadlineWatch:
    """One metrics object and one watch per context, made on first use."""
    if "deadline_watch" not in ctx.extras:
        metrics = SlaMetrics(ctx.metrics.registry)
        ctx.extras["sla_metrics"] = metrics
        tuning = SlaSettings()
        ctx.extras["deadline_watch"] = DeadlineWatch(
            ctx.uow,
            ctx.clock,
            metrics,
            horizon=timedelta(seconds=tuning.horizon_seconds),
            batch=tuning.batch,
        )
    watch: DeadlineWatch = ctx.extras["deadline_watch"]
    return watch


async def _setup(ctx: ServiceContext) -> None:
    _watch(ctx)


def _workers(ctx: ServiceContext) -> Sequence[Worker]:
    return [_watch(ctx)]


SERVICE = ServiceDefinition(
    name="sla-monitor",
    title="sla-monitor",
    default_port=8003,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    routers=lambda ctx: [build_router(ctx)],
    workers=_workers,
    setup=_setup,
    description="Arms the contract's deadlines for every MQL (first contact, in business "
    "hours when the contract says so), and emits `sla.breached` exactly once when one passes.",
)
