"""Settings that only feedback reads, from ``LEADPACT_FEEDBACK_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    review_compliance_target: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Quarterly review: share of judged MQLs that must meet a sales clause "
        "(first contact, attempts, outcome) for the clause to count as met",
    )
    review_conversion_floor: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Quarterly review: the suggested MQL threshold is the lowest score-decile "
        "boundary from which every decile converts at or above this",
    )
    review_threshold_metric: Literal["mql_to_sql", "mql_to_customer"] = Field(
        "mql_to_sql", description="Quarterly review: the conversion the floor applies to"
    )
