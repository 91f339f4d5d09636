"""What a lead is when it arrives, the rules it must meet, and the event it becomes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from intake.domain.cleaning import (
    UTM_KEYS,
    clean_country,
    clean_email,
    clean_name,
    clean_phone,
    utm_from_url,
)
from leadpact.events import Consent, LeadCreated, LeadSource

DEFAULT_REGION = "ES"
"""Used when validation is not given ``context={"default_region": ...}`` (settings do)."""

EXAMPLE: dict[str, Any] = {
    "email": "ana.garcia@acme.example",
    "phone": "+34 612 345 678",
    "first_name": "Ana",
    "last_name": "García",
    "company": "Acme Robotics",
    "title": "Head of Operations",
    "company_size": 240,
    "industry": "manufacturing",
    "country": "ES",
    "landing_url": "https://acme.example/demo?utm_source=google&utm_medium=cpc",
    "source": {"platform": "website", "campaign": "q4-demo"},
    "consent": {"marketing": True, "text": "I agree to be contacted."},
    "attributes": {"budget": "50k"},
}


class LeadIn(BaseModel):
    """A lead as our generic JSON API takes it; every platform adapter maps to this too.

    ``email`` and/or ``phone`` is required. Fields we do not know are kept in
    ``attributes``, never dropped: a form may carry what marketing needs tomorrow.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE]})

    email: str | None = Field(None, max_length=320, examples=["ana.garcia@acme.example"])
    phone: str | None = Field(None, max_length=40, description="E.164 or national format")
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    company: str | None = Field(None, max_length=300)
    title: str | None = Field(None, max_length=300)
    company_size: int | None = Field(None, ge=1, le=10_000_000)
    industry: str | None = Field(None, max_length=200)
    country: str | None = Field(None, max_length=100, description="ISO 3166 code or name")
    landing_url: str | None = Field(
        None, max_length=4000, description="Page of the form; its utm_* fill the source"
    )
    source: LeadSource = LeadSource()
    consent: Consent | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here with the field named, not later.
        if isinstance(v, str) and "\x00" in v:
            raise ValueError("NUL character not allowed")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return clean_email(v) if v and v.strip() else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None, info: ValidationInfo) -> str | None:
        if not v or not v.strip():
            return None
        region = (info.context or {}).get("default_region", DEFAULT_REGION)
        return clean_phone(v, region)

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        return clean_country(v) if v and v.strip() else None

    @field_validator("first_name", "last_name", "company", "title", "industry")
    @classmethod
    def _trim(cls, v: str | None) -> str | None:
        return clean_name(v)

    @model_validator(mode="after")
    def _reachable(self) -> LeadIn:
        if not self.email and not self.phone:
            raise ValueError("email or phone is required")
        return self

    def unknown_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def fingerprint(body: Any) -> str:
    """Stable hash of a request body (key order ignored), to tell a retry from a different
    request that reuses an Idempotency-Key."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def lead_created(
    lead_id: str,
    lead: LeadIn,
    created_at: datetime,
    *,
    existing_customer: bool | None = None,
    customer_lead_ids: list[str] | None = None,
    raw_ref: str | None = None,
) -> LeadCreated:
    """The ``lead.created`` event of a clean lead: UTM from the landing URL fill the source
    where the form did not, consent gets its time, unknown fields go to attributes."""
    utm = utm_from_url(lead.landing_url) if lead.landing_url else {}
    attributes = {**lead.unknown_fields(), **lead.attributes}
    source = lead.source
    if utm:  # most leads carry none: no copy of the source then (this runs per lead)
        for key in UTM_KEYS:
            if key in utm and key not in LeadSource.model_fields:
                attributes.setdefault(key, utm[key])
        source = source.model_copy(
            update={
                key: utm[key]
                for key in LeadSource.model_fields
                if key in utm and getattr(source, key) is None
            }
        )
    if lead.landing_url:
        attributes.setdefault("landing_url", lead.landing_url)
    return LeadCreated(
        lead_id=lead_id,
        email=lead.email,
        phone=lead.phone,
        first_name=lead.first_name,
        last_name=lead.last_name,
        company=lead.company,
        title=lead.title,
        company_size=lead.company_size,
        industry=lead.industry,
        country=lead.country,
        source=source,
        consent=_consent(lead.consent, created_at),
        attributes=attributes,
        existing_customer=existing_customer,
        customer_lead_ids=customer_lead_ids or [],
        raw_ref=raw_ref,
        created_at=created_at,
    )


def _consent(consent: Consent | None, at: datetime) -> Consent | None:
    """Consent is evidence: keep the text shown and when it was given (arrival if unsaid)."""
    if consent is None or consent.given_at is not None:
        return consent
    return consent.model_copy(update={"given_at": at})
