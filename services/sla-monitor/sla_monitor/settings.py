"""Settings that only the sla-monitor reads, from ``LEADPACT_SLA_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SlaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADPACT_SLA_", extra="ignore")

    horizon_seconds: float = Field(
        60.0,
        gt=0,
        description="How far ahead the watch loads open deadlines into memory; also the "
        "longest it goes without re-reading the store",
    )
    batch: int = Field(
        500, ge=1, description="Deadlines breached (or warned) per transaction at most"
    )
