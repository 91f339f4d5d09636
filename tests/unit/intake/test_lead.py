"""A lead's rules and the event it becomes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from intake.domain.lead import LeadIn, fingerprint, lead_created

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_unknown_fields_are_kept_in_attributes() -> None:
    lead = LeadIn.model_validate(
        {"email": "a@acme.example", "budget": "50k", "attributes": {"x": 1}}
    )
    event = lead_created("L1", lead, NOW)
    assert event.attributes == {"budget": "50k", "x": 1}


def test_the_phone_region_comes_from_the_validation_context() -> None:
    lead = LeadIn.model_validate({"phone": "(202) 555-0143"}, context={"default_region": "US"})
    assert lead.phone == "+12025550143"


def test_email_or_phone_is_required_and_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="email or phone is required"):
        LeadIn.model_validate({"first_name": "Ana"})
    with pytest.raises(ValidationError) as caught:
        LeadIn.model_validate({"email": "a@acme.example", "country": "Narnia"})
    assert caught.value.errors()[0]["loc"] == ("country",)


def test_utm_fill_the_source_without_overriding_it() -> None:
    lead = LeadIn.model_validate(
        {
            "email": "a@acme.example",
            "landing_url": "https://x.example/?utm_source=google&utm_medium=cpc&utm_content=v2",
            "source": {"platform": "website", "utm_source": "linkedin"},
        }
    )
    event = lead_created("L1", lead, NOW)
    assert (event.source.utm_source, event.source.utm_medium) == ("linkedin", "cpc")
    assert event.attributes["utm_content"] == "v2"
    assert event.attributes["landing_url"].startswith("https://x.example/")


def test_consent_gets_its_time_unless_it_has_one() -> None:
    lead = LeadIn.model_validate(
        {"email": "a@acme.example", "consent": {"marketing": True, "text": "ok"}}
    )
    consent = lead_created("L1", lead, NOW).consent
    assert consent is not None and (consent.given_at, consent.text) == (NOW, "ok")
    earlier = "2026-11-01T09:00:00Z"
    lead = LeadIn.model_validate(
        {"email": "a@acme.example", "consent": {"marketing": True, "given_at": earlier}}
    )
    stamped = lead_created("L1", lead, NOW).consent
    assert stamped is not None and stamped.given_at == datetime(2026, 11, 1, 9, tzinfo=UTC)


def test_the_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
