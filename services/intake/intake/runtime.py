"""Intake's long-lived parts, built once per app and shared by routes and workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from intake.customers import CustomerDirectory
from intake.domain.ratelimit import RateLimits
from intake.graph import GraphClient
from intake.reception import Reception
from intake.settings import IntakeSettings
from intake.workers import CustomerRechecker, MetaFetcher, PollingWorker
from leadpact.service import ServiceContext


@dataclass
class Runtime:
    settings: IntakeSettings
    reception: Reception
    customers: CustomerDirectory
    graph: GraphClient
    rate_limits: RateLimits
    meta_worker: PollingWorker
    customer_worker: PollingWorker

    async def start(self) -> None:
        """Nothing to open: the HTTP clients connect lazily."""

    async def stop(self) -> None:
        await self.reception.close()
        await self.customers.close()
        await self.graph.close()


def runtime(ctx: ServiceContext) -> Runtime:
    """The app's runtime, built on first use (routes are built before the lifespan runs)."""
    existing = ctx.extras.get("intake_runtime")
    if isinstance(existing, Runtime):
        return existing
    built = _build(ctx, IntakeSettings())
    ctx.extras["intake_runtime"] = built
    ctx.extras["intake_settings"] = built.settings
    return built


def _build(ctx: ServiceContext, settings: IntakeSettings) -> Runtime:
    customers = CustomerDirectory(
        settings.crm_sync_url or ctx.settings.crm_sync_url,
        settings.customer_check_timeout_seconds,
        ctx.clock,
        cooldown=timedelta(seconds=settings.customer_check_retry_seconds),
        api_key=settings.crm_sync_api_key,
    )
    graph = GraphClient(
        settings.graph_base_url,
        settings.meta_access_token,
        timeout=settings.graph_timeout_seconds,
        retries=settings.graph_retries,
        backoff=settings.graph_backoff_seconds,
    )
    reception = Reception(ctx, settings, customers)
    poll = timedelta(seconds=settings.worker_poll_seconds)
    fetcher = MetaFetcher(reception, graph, timedelta(seconds=settings.fetch_retry_seconds))
    rechecker = CustomerRechecker(
        reception, timedelta(seconds=settings.customer_check_retry_seconds)
    )
    return Runtime(
        settings=settings,
        reception=reception,
        customers=customers,
        graph=graph,
        rate_limits=RateLimits(settings.rate_limit_per_second, settings.rate_limit_burst),
        meta_worker=PollingWorker("intake-meta-fetch", ctx.clock, poll, fetcher.step),
        customer_worker=PollingWorker("intake-customer-check", ctx.clock, poll, rechecker.step),
    )
