"""Request bodies of each platform as documented by the platform, for OpenAPI (the routes
read and check the raw bytes themselves; these models only describe them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MetaLeadgenValue(_Open):
    leadgen_id: str
    form_id: str | None = None
    page_id: str | None = None
    ad_id: str | None = None
    adgroup_id: str | None = None
    created_time: int | None = None


class MetaChange(_Open):
    field: str = Field(description="Only `leadgen` changes are read")
    value: MetaLeadgenValue


class MetaEntry(_Open):
    id: str | None = None
    time: int | None = None
    changes: list[MetaChange] = Field(default_factory=list)


class MetaNotificationBody(_Open):
    """Meta Webhooks `page` notification with `leadgen` changes."""

    object: str = Field(description="`page`")
    entry: list[MetaEntry]


META_EXAMPLE: dict[str, Any] = {
    "object": "page",
    "entry": [
        {
            "id": "153125381133",
            "time": 1438292065,
            "changes": [
                {
                    "field": "leadgen",
                    "value": {
                        "leadgen_id": "123123123123",
                        "page_id": "153125381133",
                        "form_id": "456456456456",
                        "adgroup_id": "0",
                        "ad_id": "0",
                        "created_time": 1438292065,
                    },
                }
            ],
        }
    ],
}


class GoogleColumn(_Open):
    column_id: str | None = Field(None, description="e.g. FULL_NAME, EMAIL, PHONE_NUMBER")
    column_name: str | None = None
    string_value: str | None = None


class GoogleLeadBody(_Open):
    """Google Ads lead form webhook (`WebhookLead`)."""

    lead_id: str
    user_column_data: list[GoogleColumn] = Field(default_factory=list)
    api_version: str | None = None
    form_id: int | None = None
    campaign_id: int | None = None
    google_key: str
    is_test: bool | None = None
    gcl_id: str | None = None
    adgroup_id: int | None = None
    creative_id: int | None = None


GOOGLE_EXAMPLE: dict[str, Any] = {
    "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
    "user_column_data": [
        {"column_name": "Full Name", "string_value": "Ana García", "column_id": "FULL_NAME"},
        {
            "column_name": "User Email",
            "string_value": "ana.garcia@acme.example",
            "column_id": "EMAIL",
        },
        {"column_name": "User Phone", "string_value": "+34612345678", "column_id": "PHONE_NUMBER"},
    ],
    "api_version": "1.0",
    "form_id": 40000000000,
    "campaign_id": 20000000000,
    "google_key": "the key set on the form",
    "is_test": True,
    "gcl_id": "gclid-123",
    "adgroup_id": 30000000000,
    "creative_id": 50000000000,
}


class TypeformAnswerField(_Open):
    id: str | None = None
    type: str | None = None
    ref: str | None = None


class TypeformAnswer(_Open):
    type: str
    field: TypeformAnswerField


class TypeformResponse(_Open):
    form_id: str
    token: str
    landed_at: str | None = None
    submitted_at: str | None = None
    hidden: dict[str, Any] | None = None
    answers: list[TypeformAnswer] = Field(default_factory=list)


class TypeformBody(_Open):
    """Typeform webhook (`form_response` event)."""

    event_id: str
    event_type: str = Field(description="`form_response`")
    form_response: TypeformResponse


TYPEFORM_EXAMPLE: dict[str, Any] = {
    "event_id": "LtWXD3crgy",
    "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "landed_at": "2026-11-20T10:00:00Z",
        "submitted_at": "2026-11-20T10:02:00Z",
        "hidden": {"utm_source": "newsletter"},
        "answers": [
            {
                "type": "email",
                "email": "ana.garcia@acme.example",
                "field": {"id": "SMEUb7VJz92Q", "type": "email", "ref": "work_email"},
            },
            {
                "type": "text",
                "text": "Acme Robotics",
                "field": {"id": "JwWggjAKtOkA", "type": "short_text", "ref": "company"},
            },
        ],
    },
}


class WebsiteForm(_Open):
    """A website form; any field we do not know is kept in the lead's attributes."""

    email: str | None = None
    phone: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None
    page_url: str | None = Field(None, description="Landing page; its utm_* fill the source")
    consent: str | None = Field(None, description="`on` when the consent box is ticked")
    consent_text: str | None = Field(None, description="The consent text that was shown")
    form: str | None = Field(None, description="Which form on the site")


WEBSITE_EXAMPLE: dict[str, Any] = {
    "email": "ana.garcia@acme.example",
    "name": "Ana García",
    "company": "Acme Robotics",
    "page_url": "https://acme.example/demo?utm_source=google&utm_medium=cpc",
    "consent": "on",
    "consent_text": "I agree to be contacted about Acme products.",
    "form": "demo-request",
}
