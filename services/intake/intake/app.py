"""Bootstrap: the intake service described once, wired by ``leadpact.service``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter

from intake.api import build_router
from intake.handlers import on_privacy_erased
from intake.platform_api import build_platform_router
from intake.runtime import runtime
from leadpact.events import EventData, PrivacyErased
from leadpact.service import HandlerFunction, ServiceContext, ServiceDefinition, Worker

EVENT_HANDLERS: dict[type[EventData], HandlerFunction] = {
    PrivacyErased: on_privacy_erased,
}
"""Leads come in over HTTP; the one event intake consumes is an erasure request."""


def _routers(ctx: ServiceContext) -> Sequence[APIRouter]:
    parts = runtime(ctx)
    return [build_router(ctx, parts), build_platform_router(ctx, parts)]


def _workers(ctx: ServiceContext) -> Sequence[Worker]:
    parts = runtime(ctx)
    return [parts, parts.meta_worker, parts.customer_worker]


SERVICE = ServiceDefinition(
    name="intake",
    title="intake",
    default_port=8001,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    routers=_routers,
    workers=_workers,
    description="Receives leads from our JSON API, Meta Lead Ads, Google Ads lead forms, "
    "Typeform and website forms; cleans them, stores them durably and emits `lead.created` "
    "(or `lead.activity` for a resubmission).",
)
