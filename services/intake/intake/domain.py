"""What a lead is when it arrives, and the rules it must meet; pure, no I/O."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from leadpact.events import Consent, LeadCreated, LeadSource


class LeadIn(BaseModel):
    """A lead as our generic JSON API takes it. ``email`` and/or ``phone`` is required."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ana.garcia@acme.example",
                    "phone": "+34 612 345 678",
                    "first_name": "Ana",
                    "last_name": "García",
                    "company": "Acme Robotics",
                    "title": "Head of Operations",
                    "company_size": 240,
                    "industry": "manufacturing",
                    "country": "ES",
                    "source": {
                        "platform": "website",
                        "campaign": "q4-demo",
                        "utm_source": "google",
                    },
                    "consent": {"marketing": True, "text": "I agree to be contacted."},
                    "attributes": {"budget": "50k"},
                }
            ]
        },
    )

    email: EmailStr | None = None
    phone: str | None = Field(None, min_length=5, max_length=32, pattern=r"^\+?[0-9 ()./-]+$")
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    company: str | None = Field(None, max_length=300)
    title: str | None = Field(None, max_length=300)
    company_size: int | None = Field(None, ge=1, le=10_000_000)
    industry: str | None = Field(None, max_length=200)
    country: str | None = Field(None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    source: LeadSource = LeadSource()
    consent: Consent | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("first_name", "last_name", "company", "title", "industry", mode="before")
    @classmethod
    def _trim(cls, v: Any) -> Any:
        return v.strip() or None if isinstance(v, str) else v

    @field_validator("country")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.upper() if v else v

    @model_validator(mode="after")
    def _reachable(self) -> LeadIn:
        if not self.email and not self.phone:
            raise ValueError("email or phone is required")
        return self

    def fingerprint(self) -> str:
        """Stable hash of the request body, to tell a retry from a different request that
        reuses an Idempotency-Key."""
        body = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body).hexdigest()


def lead_created(lead_id: str, lead: LeadIn, created_at: datetime) -> LeadCreated:
    data = lead.model_dump(exclude={"source", "consent", "email"})
    return LeadCreated(
        lead_id=lead_id,
        email=str(lead.email).lower() if lead.email else None,
        source=lead.source,
        consent=lead.consent,
        created_at=created_at,
        **data,
    )
