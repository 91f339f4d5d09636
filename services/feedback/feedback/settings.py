"""Settings that only feedback reads, from ``LEADPACT_FEEDBACK_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STATUS_MAP = Path(__file__).parent / "status_map.yaml"


class FeedbackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADPACT_FEEDBACK_", extra="ignore")

    hubspot_client_secret: str | None = Field(
        None, description="HubSpot app client secret; the HubSpot webhook answers 503 without it"
    )
    webhook_secret: str | None = Field(
        None, description="Shared secret of the generic signed webhook; 503 without it"
    )
    public_url: str | None = Field(
        None,
        description="Base URL HubSpot calls (e.g. https://feedback.example.com) when a proxy "
        "rewrites the host or scheme; the v3 signature covers the full URL",
    )
    signature_max_age_seconds: int = Field(300, gt=0, description="Replay window of webhooks")
    status_map_path: Path = Field(
        DEFAULT_STATUS_MAP, description="YAML mapping CRM statuses to leadpact activities"
    )
    recycle_horizon_seconds: float = Field(
        3600.0, gt=0, description="Longest the recycle worker sleeps without reading the store"
    )
    recycle_batch: int = Field(500, ge=1, description="Recycles emitted per transaction at most")
