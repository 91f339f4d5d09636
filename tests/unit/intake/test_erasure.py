"""Pure parts of intake's erasure: the subject hash and recognising a person in a payload."""

from __future__ import annotations

import hashlib

from intake.domain.erasure import (
    erased_event_data,
    erased_lead_values,
    mentions,
    subject_hash,
)


def test_the_hash_is_the_one_privacy_erased_carries() -> None:
    expected = hashlib.sha256(b"ana.garcia@acme.example").hexdigest()
    assert subject_hash("  Ana.Garcia@ACME.example ") == expected
    assert subject_hash(None) is None and subject_hash("  ") is None


def test_a_payload_mentions_a_person_in_json_or_form_encoding() -> None:
    people = ["ana.garcia@acme.example", "+34612345678"]
    assert mentions(b'{"email": "Ana.Garcia@Acme.example"}', people)
    assert mentions(b"email=ana.garcia%40acme.example&x=1", people)
    assert mentions(b"phone=%2B34612345678", people)
    assert not mentions(b'{"email": "bea@other.example"}', people)
    assert not mentions(b"anything", ["", "  "])


def test_every_personal_column_is_blanked_and_the_account_kept() -> None:
    blank = erased_lead_values()
    assert {"email", "email_hash", "phone", "first_name", "last_name", "title"} <= set(blank)
    assert blank["attributes"] == {} and blank["consent"] is None
    assert not {"company", "company_size", "country", "source", "created_at"} & set(blank)


def test_a_waiting_lead_created_goes_out_without_the_person() -> None:

    data = {
        "lead_id": "L1",
        "email": "ana@acme.example",
        "phone": "+34612345678",
        "first_name": "Ana",
        "company": "Acme",
        "attributes": {"nick": "Anita"},
        "consent": {"marketing": True, "text": "I agree"},
        "created_at": "2026-11-02T09:00:00Z",
    }
    erased = erased_event_data("lead.created", data)
    assert erased["email"] is None and erased["phone"] is None and erased["first_name"] is None
    assert erased["attributes"] == {} and erased["consent"] is None
    assert "email_hash" not in erased  # not a field of the event
    assert (erased["company"], erased["created_at"]) == ("Acme", "2026-11-02T09:00:00Z")
    activity = {"lead_id": "L1", "activity": "resubmitted", "detail": {"channel": "api"}}
    assert erased_event_data("lead.activity", activity) == activity
