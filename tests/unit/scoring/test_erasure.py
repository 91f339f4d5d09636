"""What an erased lead keeps in scoring, and how reasons lose the person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scoring.domain.erasure import ERASED, erase_fields, redact_reasons
from scoring.features import live_record

FIELDS = {
    "email": "ana.garcia@gmail.com",
    "email_domain": "gmail.com",
    "phone": "+34612345678",
    "first_name": "Ana",
    "last_name": "Zubizarreta",
    "company": "Acme Robotics",
    "title": "VP Sales",
    "company_size": 240,
    "industry": "robotics",
    "country": "ES",
    "existing_customer": False,
    "created_at": "2026-11-02T09:00:00Z",
    "notes": "call her after 6",
    "tags": ["ana", {"nick": "Anita"}],
    "budget": 50000.0,
}


def test_numbers_and_coarse_categories_stay_and_text_goes() -> None:
    erased = erase_fields(FIELDS, free_mail=["gmail.com"])
    assert erased.fields == {
        "company_size": 240,
        "industry": "robotics",
        "country": "ES",
        "existing_customer": False,
        "created_at": "2026-11-02T09:00:00Z",
        "budget": 50000.0,
        "title_seniority": "vp",
        "email_domain_type": "free",
    }
    assert {"ana.garcia@gmail.com", "Zubizarreta", "VP Sales", "Anita", "call her after 6"} <= set(
        erased.removed
    )


def test_erasing_twice_keeps_the_derived_categories() -> None:
    once = erase_fields(FIELDS, free_mail=["gmail.com"]).fields
    assert erase_fields(once, free_mail=[]).fields == once


def test_the_model_still_reads_the_derived_categories_of_an_erased_lead() -> None:
    fields = erase_fields(FIELDS, free_mail=["gmail.com"]).fields
    record = live_record(
        fields,
        [],
        activity_kinds=[],
        half_life=timedelta(days=14),
        free_mail=["gmail.com"],
        now=datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert (record["title_seniority"], record["email_domain_type"]) == ("vp", "free")


def test_reasons_quote_no_removed_value() -> None:
    reasons = [
        "+20 title: VP Sales",
        "+10 email: ana.garcia@gmail.com",
        "+15 company_size: 240",
        "+10 activity: pricing_page_view x3",
        "disqualified email_domain: gmail.com",
        "+0.12 title_seniority: vp",
        "+0.05 activity:pricing_page_view: 1.50",
        "-0.03 note mentions Zubizarreta",
    ]
    assert redact_reasons(reasons, ["Zubizarreta", "VP Sales", "a"]) == [
        f"+20 title: {ERASED}",
        f"+10 email: {ERASED}",
        "+15 company_size: 240",
        "+10 activity: pricing_page_view x3",
        f"disqualified email_domain: {ERASED}",
        "+0.12 title_seniority: vp",
        "+0.05 activity:pricing_page_view: 1.50",
        f"-0.03 note mentions {ERASED}",
    ]
