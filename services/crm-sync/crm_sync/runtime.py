"""crm-sync's long-lived parts, built once per app and shared by routes, handlers and the
sync worker (``ctx.extras["crm"]``; handlers ask for it by the parameter name ``crm``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from crm_sync.matching import CUSTOMER_MODEL
from crm_sync.metrics import CrmMetrics
from crm_sync.records import Resolution
from crm_sync.settings import CrmSyncSettings
from crm_sync.sync import SyncWorker
from leadpact.service import ServiceContext


@dataclass
class Runtime:
    settings: CrmSyncSettings
    metrics: CrmMetrics
    resolution: Resolution
    sync: SyncWorker


def runtime(ctx: ServiceContext) -> Runtime:
    existing = ctx.extras.get("crm")
    if isinstance(existing, Runtime):
        return existing
    settings = CrmSyncSettings()
    metrics = CrmMetrics(ctx.metrics.registry)
    urls = {
        name: url
        for name, url in (("crm", settings.crm_push_url), ("billing", settings.billing_push_url))
        if url
    }
    model = replace(
        CUSTOMER_MODEL,
        upper=settings.match_upper,
        lower=settings.match_lower,
        window=settings.match_window,
    )
    sync = SyncWorker(
        ctx.db,
        ctx.clock,
        urls,
        token=settings.push_token,
        timeout=settings.push_timeout_seconds,
        max_attempts=settings.push_max_attempts,
        first_backoff=settings.push_backoff_seconds,
        longest_backoff=settings.push_max_backoff_seconds,
        poll=settings.push_poll_seconds,
        metrics=metrics,
    )
    resolution = Resolution(
        model=model,
        candidates=settings.match_candidates,
        window=settings.match_window,
        sync_targets=tuple(urls),
        auto_merge_leads=settings.match_auto_merge_leads,
        metrics=metrics,
    )
    built = Runtime(settings, metrics, resolution, sync)
    ctx.extras["crm"] = built
    return built
