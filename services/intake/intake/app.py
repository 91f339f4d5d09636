"""Bootstrap: the intake service described once, wired by ``leadpact.service``."""

from __future__ import annotations

from pathlib import Path

from intake.api import build_router
from leadpact.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="intake",
    title="intake",
    default_port=8001,
    migrations=Path(__file__).parent / "migrations",
    routers=lambda ctx: [build_router(ctx)],
    description="Receives leads, stores them durably and emits `lead.created`.",
)
