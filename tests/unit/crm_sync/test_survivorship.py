"""Which source's value survives, per field, and where sources disagree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_sync.domain import observation, tax_id_key
from crm_sync.survivorship import Candidate, survive

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def c(field: str, value: str, system: str, minutes: int = 0, verified: bool = False) -> Candidate:
    return Candidate(
        field, value, system, f"{system}:{minutes}", verified, T0 + timedelta(minutes=minutes)
    )


def test_billing_is_the_authority_for_legal_name_tax_id_and_address() -> None:
    chosen, _ = survive(
        [
            c("legal_name", "Acme", "lead"),
            c("legal_name", "Acme Robotics S.L.", "billing", 1),
            c("legal_name", "ACME Corp", "crm", 2),
            c("tax_id", "ESB1", "crm", 5),
            c("tax_id", "ESB2", "billing", 0),
        ]
    )
    assert chosen["legal_name"].value == "Acme Robotics S.L."
    assert chosen["legal_name"].rule == "authority:billing>crm>lead"
    assert chosen["tax_id"].value == "ESB2" and chosen["tax_id"].ref == "billing:0"


def test_sales_is_the_authority_for_title_and_direct_phone() -> None:
    chosen, _ = survive(
        [
            c("title", "Engineer", "billing", 9),
            c("title", "CTO", "crm", 1),
            c("phone", "+34600000001", "lead", 0),
            c("phone", "+34600000002", "billing", 5),
        ]
    )
    assert chosen["title"].value == "CTO"
    assert chosen["phone"].value == "+34600000001"


def test_the_newest_verified_email_survives_else_the_first_seen() -> None:
    chosen, _ = survive(
        [
            c("email", "old@acme.example", "billing", 0, verified=True),
            c("email", "form@acme.example", "lead", 9),
            c("email", "new@acme.example", "crm", 5, verified=True),
        ]
    )
    assert chosen["email"].value == "new@acme.example"
    chosen, _ = survive(
        [c("email", "a@x.example", "lead", 3), c("email", "b@x.example", "lead", 1)]
    )
    assert chosen["email"].value == "b@x.example"


def test_disagreeing_sources_are_a_conflict_not_an_overwrite() -> None:
    chosen, conflicts = survive(
        [
            c("company", "Acme", "lead", 0),
            c("company", "ACME", "crm", 1),
            c("company", "Globex", "billing", 2),
        ]
    )
    assert chosen["company"].value == "Acme" and chosen["company"].rule == "first_seen"
    assert [(x.field, x.chosen, [v.value for v in x.candidates]) for x in conflicts] == [
        ("company", "Acme", ["Acme", "ACME", "Globex"])
    ]
    _, none = survive([c("company", "Acme", "lead", 0), c("company", "ACME", "crm", 1)])
    assert none == []  # the same value spelled in another case is no conflict


def test_an_observation_normalises_its_keys() -> None:
    obs = observation(
        "lead",
        "lead:L1",
        T0,
        {
            "email": " Ana@ACME.example ",
            "phone": "612 34 56 78",
            "country": "es",
            "tax_id": "b-1234567.8",
            "title": "  ",
        },
        verified=frozenset({"email", "title"}),
    )
    assert obs.fields == {
        "email": "ana@acme.example",
        "phone": "+34612345678",
        "country": "ES",
        "tax_id": "B12345678",
    }
    assert obs.verified == {"email"}
    assert tax_id_key("12") is None
