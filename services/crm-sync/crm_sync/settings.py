"""Settings that only crm-sync reads, from ``LEADPACT_CRM_SYNC_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CrmSyncSettings(BaseSettings):
    """Webhook secrets, matching thresholds and the outbound sync targets.

    A webhook whose secret is empty answers 503, so an unconfigured deployment never accepts
    unauthenticated billing data. An empty push URL switches that sync target off."""

    model_config = SettingsConfigDict(env_prefix="LEADPACT_CRM_SYNC_", extra="ignore")

    stripe_webhook_secrets: list[str] = Field(
        default_factory=list,
        description="Stripe endpoint secrets (whsec_…), JSON list: two during a rotation",
    )
    stripe_tolerance_seconds: float = Field(300, description="Replay window of Stripe-Signature")
    webhook_secrets: list[str] = Field(
        default_factory=list, description="Secrets of the generic signed JSON webhook"
    )
    webhook_tolerance_seconds: float = Field(300, description="Replay window, generic webhook")
    max_body_bytes: int = Field(1024 * 1024, description="Larger webhook bodies get 413")

    match_upper: float = Field(14.0, description="Weight (log2) from which a pair is merged")
    match_lower: float = Field(8.0, description="Weight from which a pair goes to review")
    match_auto_merge_leads: bool = Field(
        False, description="Merge two lead-only records on the score alone (else: review)"
    )
    match_candidates: int = Field(50, description="Most candidates compared per record")
    match_window: int = Field(3, description="Sorted-neighbourhood window, each side")

    crm_push_url: str = Field("", description="Where customer changes are POSTed for the CRM")
    billing_push_url: str = Field("", description="Where changes are POSTed for billing")
    push_token: str = Field("", description="Bearer token sent with pushes, if any")
    push_timeout_seconds: float = 5.0
    push_max_attempts: int = Field(8, description="Attempts before a push is marked failed")
    push_backoff_seconds: float = Field(2.0, description="First retry delay; doubles per attempt")
    push_max_backoff_seconds: float = Field(600.0, description="Longest delay between retries")
    push_poll_seconds: float = Field(
        1.0, description="Real-time poll for pushes queued by other processes or handlers"
    )
