"""Settings that only scoring reads, from ``LEADPACT_SCORING_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FEATURES = {
    "title_seniority": "categorical",
    "email_domain_type": "categorical",
    "company_size": "numeric",
    "industry": "categorical",
    "country": "categorical",
    "source": "categorical",
}
DEFAULT_ACTIVITIES = [
    "pricing_page_view",
    "page_viewed",
    "content_downloaded",
    "email_opened",
    "webinar",
]


class ScoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADPACT_SCORING_", extra="ignore")

    rescore_min_points: int = Field(
        10, ge=0, description="A re-score is announced when the tier changes or points move this"
    )
    history_limit: int = Field(50, ge=1, description="Scores returned in a lead's history")

    features: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_FEATURES),
        description="Lead fields the model reads (name -> numeric|categorical); JSON",
    )
    activity_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ACTIVITIES),
        description="Activities counted (decayed) as model features; JSON list",
    )
    activity_half_life_days: float = Field(14.0, gt=0, description="Decay of activity counts")
    free_mail_list: str = Field(
        "free_mail_competitors", description="Contract list that makes email_domain_type free"
    )

    positive_reasons: list[str] = Field(default_factory=list, description="Rejections labelled 1")
    negative_reasons: list[str] = Field(
        default_factory=lambda: ["out_of_budget", "no_authority", "competitor_chosen", "other"],
        description="Rejection reasons labelled 0; other reasons (no_response) are left out",
    )

    min_labels: int = Field(200, ge=20, description="Labelled leads needed before a model")
    retrain_min_new_labels: int = Field(100, ge=1, description="New labels that trigger training")
    retrain_every_days: float = Field(7.0, gt=0, description="Retrain at least this often")
    retrain_poll_seconds: float = Field(30.0, gt=0, description="How often the trainer looks")
    holdout_share: float = Field(0.2, gt=0, lt=0.5, description="Latest share kept to compare")

    @property
    def activity_half_life(self) -> timedelta:
        return timedelta(days=self.activity_half_life_days)
