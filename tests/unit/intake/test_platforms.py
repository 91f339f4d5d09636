"""Platform payloads mapped to our lead's fields; signatures as each platform computes them."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from intake.domain.platforms import (
    LeadgenChange,
    google_lead,
    meta_lead,
    meta_leadgen_changes,
    typeform_lead,
    website_lead,
)
from intake.domain.signatures import (
    key_matches,
    meta_signature_valid,
    typeform_signature_valid,
)

BODY = b'{"object":"page"}'


def test_meta_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    good = "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert meta_signature_valid("s3cret", BODY, good)
    assert not meta_signature_valid("s3cret", BODY + b" ", good)
    assert not meta_signature_valid("other", BODY, good)
    assert not meta_signature_valid("s3cret", BODY, None)
    assert not meta_signature_valid("", BODY, good)
    assert not meta_signature_valid("s3cret", BODY, good.replace("sha256=", "sha1="))


def test_typeform_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    digest = hmac.new(b"tf", BODY, hashlib.sha256).digest()
    good = "sha256=" + base64.b64encode(digest).decode()
    assert typeform_signature_valid("tf", BODY, good)
    assert not typeform_signature_valid("tf", b"{}", good)
    assert not typeform_signature_valid("tf", BODY, "sha256=" + digest.hex())


def test_google_key_comparison() -> None:
    assert key_matches("k", "k")
    assert not key_matches("k", "K")
    assert not key_matches("", "")
    assert not key_matches("k", None)


def test_meta_notifications_yield_leadgen_changes_and_name_bad_fields() -> None:
    note = {
        "object": "page",
        "entry": [
            {"changes": [{"field": "leadgen", "value": {"leadgen_id": 1, "form_id": 2}}]},
            {"changes": [{"field": "feed", "value": {}}]},
        ],
    }
    assert meta_leadgen_changes(note) == [LeadgenChange("1", "2", None, None)]
    with pytest.raises(ValueError, match="object"):
        meta_leadgen_changes({"object": "user", "entry": []})
    with pytest.raises(ValueError, match=r"entry\[0\].changes\[0\].value.leadgen_id"):
        meta_leadgen_changes(
            {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}
        )


def test_meta_field_data_is_mapped() -> None:
    graph = {
        "field_data": [
            {"name": "email", "values": ["a@acme.example"]},
            {"name": "full_name", "values": ["Ana García"]},
            {"name": "company_name", "values": ["Acme"]},
            {"name": "budget", "values": ["10k"]},
        ],
        "campaign_id": "9",
    }
    mapped = meta_lead(graph, LeadgenChange("77", "F", "P", "A"))
    assert mapped.external_ref == "meta:77"
    assert mapped.lead["first_name"] == "Ana" and mapped.lead["company"] == "Acme"
    assert mapped.lead["attributes"] == {"budget": "10k"}
    assert mapped.lead["source"] == {"platform": "meta", "form": "F", "ad": "A", "campaign": "9"}


def test_google_columns_are_read_by_column_id_and_test_leads_are_marked() -> None:
    payload = {
        "lead_id": "L",
        "is_test": True,
        "user_column_data": [
            {"column_id": "WORK_EMAIL", "string_value": "a@acme.example", "column_name": "Work"},
            {"column_id": "JOB_TITLE", "string_value": "CTO"},
            {"column_id": "COMPANY_SIZE", "string_value": "50-200"},
        ],
    }
    mapped = google_lead(payload)
    assert mapped.is_test and mapped.external_ref == "google:L"
    assert mapped.lead["email"] == "a@acme.example" and mapped.lead["title"] == "CTO"
    assert mapped.lead["attributes"] == {"company_size": "50-200"}
    with pytest.raises(ValueError, match="lead_id"):
        google_lead({"user_column_data": []})
    with pytest.raises(ValueError, match="user_column_data"):
        google_lead({"lead_id": "L", "user_column_data": "x"})


def test_typeform_answers_follow_the_field_map_then_the_answer_type() -> None:
    payload = {
        "form_response": {
            "form_id": "F",
            "token": "T",
            "answers": [
                {"type": "phone_number", "phone_number": "+34612345678", "field": {"id": "a"}},
                {"type": "text", "text": "Acme", "field": {"id": "b", "ref": "org"}},
                {"type": "boolean", "boolean": True, "field": {"id": "c", "ref": "newsletter"}},
                {"type": "choices", "choices": {"labels": ["x", "y"]}, "field": {"id": "d"}},
            ],
        }
    }
    mapped = typeform_lead(payload, {"F": {"org": "company"}})
    assert mapped.external_ref == "typeform:F:T"
    assert mapped.lead["phone"] == "+34612345678" and mapped.lead["company"] == "Acme"
    assert mapped.lead["attributes"] == {"newsletter": True, "d": ["x", "y"]}
    with pytest.raises(ValueError, match="token"):
        typeform_lead({"form_response": {"form_id": "F"}}, {})


def test_website_fields_consent_and_aliases() -> None:
    mapped = website_lead(
        {
            "email": "a@acme.example",
            "name": "Ana",
            "tel": "600",
            "consent": "on",
            "consent_text": "ok",
            "x": "1",
        },
        "fp",
    )
    assert mapped.external_ref == "website:fp"
    assert mapped.lead["phone"] == "600" and mapped.lead["first_name"] == "Ana"
    assert mapped.lead["consent"] == {"marketing": True, "text": "ok"}
    assert mapped.lead["attributes"] == {"x": "1"}
