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


class NotifySettings(BaseSettings):
    """Where notifications go, from ``LEADPACT_NOTIFY_*``. A channel without its URL or
    host is off; with none configured, nothing is queued."""

    model_config = SettingsConfigDict(env_prefix="LEADPACT_NOTIFY_", extra="ignore")

    slack_webhook_url: str | None = Field(
        None, description="Slack-compatible incoming webhook (JSON with blocks)"
    )
    smtp_host: str | None = Field(None, description="SMTP server for e-mail")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    smtp_tls: bool = Field(False, description="implicit TLS (port 465)")
    smtp_from: str = Field("leadpact@localhost", description="From: address")
    webhook_url: str | None = Field(None, description="generic webhook, HMAC-SHA256 signed")
    webhook_secret: str | None = Field(None, description="key of the webhook signature")
    max_attempts: int = Field(8, ge=1, description="deliveries tried before giving up")
    backoff_seconds: float = Field(30.0, gt=0, description="first retry delay, doubled each")
    backoff_max_seconds: float = Field(3600.0, gt=0, description="longest retry delay")
    timeout_seconds: float = Field(5.0, gt=0, description="per delivery attempt")
    poll_seconds: float = Field(1.0, gt=0, description="queue poll when not woken")
    batch: int = Field(50, ge=1, description="deliveries per worker round")

    def channels(self) -> list[str]:
        found = []
        if self.slack_webhook_url:
            found.append("slack")
        if self.smtp_host:
            found.append("email")
        if self.webhook_url:
            found.append("webhook")
        return found
