"""Settings that only intake reads, from ``LEADPACT_INTAKE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    """Platform secrets, cleaning defaults and the limits of intake's public API.

    Secrets left empty switch their platform route off (it answers 503), so an unconfigured
    deployment never accepts unauthenticated webhooks.
    """

    model_config = SettingsConfigDict(env_prefix="LEADPACT_INTAKE_", extra="ignore")

    default_region: str = Field("ES", description="Region for phone numbers without +prefix")
    require_api_key: bool = Field(
        False, description="POST /v1/leads needs an X-API-Key (turn on in production)"
    )
    resubmission_window_seconds: float = Field(
        30 * 86400, description="Same person again within this window: activity, not lead"
    )
    max_body_bytes: int = Field(64 * 1024, description="Larger request bodies get 413")
    rate_limit_per_second: float = Field(20.0, description="Sustained requests per API key")
    rate_limit_burst: int = Field(100, description="Requests an API key may send at once")

    meta_app_secret: str = Field("", description="Meta app secret (X-Hub-Signature-256)")
    meta_verify_token: str = Field("", description="Token Meta echoes when subscribing")
    meta_access_token: str = Field("", description="Page access token for the Graph API")
    graph_base_url: str = Field("https://graph.facebook.com/v21.0")
    graph_timeout_seconds: float = 5.0
    graph_retries: int = Field(3, description="Attempts per fetch before a later retry")
    graph_backoff_seconds: float = Field(0.5, description="First backoff; doubles per retry")
    fetch_retry_seconds: float = Field(60.0, description="Wait before re-fetching after a failure")

    google_key: str = Field("", description="The key set on the Google Ads lead form webhook")
    typeform_secret: str = Field("", description="Typeform webhook secret")
    typeform_field_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Per form id: {field ref or id: lead field}, e.g. {"abc": {"q1": "email"}}',
    )
    website_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to post website forms; empty = any"
    )
    website_honeypot: str = Field("website", description="Hidden field that only bots fill")

    customer_check: bool = Field(True, description="Ask crm-sync whether a lead is a customer")
    crm_sync_url: str = Field("", description="Overrides LEADPACT_CRM_SYNC_URL for intake")
    crm_sync_api_key: str = Field(
        "", description="X-API-Key intake sends to crm-sync (scope customers:read)"
    )
    customer_check_timeout_seconds: float = 0.5
    customer_check_retry_seconds: float = Field(60.0, description="Retry of a pending check")
    worker_poll_seconds: float = Field(5.0, description="Workers look for due work this often")
