"""Cleaning what people type into forms."""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.domain.cleaning import (
    clean_country,
    clean_email,
    clean_name,
    clean_phone,
    split_full_name,
    utm_from_url,
)


def test_email_is_trimmed_lowercased_and_checked() -> None:
    assert clean_email("  Ana.Garcia@ACME.Example ") == "ana.garcia@acme.example"
    for bad in ("ana@", "@acme.example", "ana acme.example", "ana@acme..example"):
        with pytest.raises(ValueError):
            clean_email(bad)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("612 345 678", "ES", "+34612345678"),
        ("+34 (612) 34-56-78", "US", "+34612345678"),
        ("(202) 555-0143", "US", "+12025550143"),
        ("030 901820", "DE", "+4930901820"),
    ],
)
def test_phone_becomes_e164_with_the_default_region(raw: str, region: str, e164: str) -> None:
    assert clean_phone(raw, region) == e164


@pytest.mark.parametrize("bad", ["12", "abc", "+34 000"])
def test_a_phone_that_is_not_a_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        clean_phone(bad, "ES")


@pytest.mark.parametrize(
    ("raw", "alpha2"),
    [("es", "ES"), ("ESP", "ES"), ("Spain", "ES"), (" germany ", "DE"), ("United States", "US")],
)
def test_country_becomes_iso_alpha2(raw: str, alpha2: str) -> None:
    assert clean_country(raw) == alpha2


def test_an_unknown_country_is_refused() -> None:
    with pytest.raises(ValueError, match="ISO 3166"):
        clean_country("Atlantis")


def test_names_are_trimmed_and_blank_is_none() -> None:
    assert clean_name("  Ana   María ") == "Ana María"
    assert clean_name("   ") is None
    assert split_full_name("Ana María García") == ("Ana", "María García")
    assert split_full_name("Ana") == ("Ana", None)


def test_utm_parameters_come_from_the_landing_url() -> None:
    url = "https://acme.example/demo?utm_source=google&utm_medium=cpc&utm_campaign=q4&x=1&utm_term="
    assert utm_from_url(url) == {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "q4"}
    assert utm_from_url("https://acme.example/") == {}


ATEXT = string.ascii_letters + string.digits + "_!#$%&'*+-/=?^`{|}~"
HOSTNAME = string.ascii_letters + string.digits + "-."
TRICKY = ["", ".", "..", "-", "a-", "-a", "ab--cd", "xn--bcher-kva", "test", "local", "1", "2x"]


@settings(max_examples=600, deadline=None)
@given(
    local=st.text(ATEXT + ".", min_size=0, max_size=70),
    labels=st.lists(
        st.one_of(st.text(HOSTNAME, min_size=0, max_size=70), st.sampled_from(TRICKY)),
        min_size=1,
        max_size=4,
    ),
)
def test_plain_addresses_are_judged_exactly_as_email_validator_does(
    local: str, labels: list[str]
) -> None:
    """The per-domain shortcut must never accept, refuse or normalise differently."""
    address = f"{local}@{'.'.join(labels)}"
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = clean_email(address)
    except ValueError:
        got = None
    assert got == (expected.lower() if expected is not None else None)


def test_email_shortcut_covers_long_addresses_and_foreign_domains() -> None:
    too_long = "a" * 250 + "@acme.example"
    with pytest.raises(ValueError, match="too long"):
        clean_email(too_long)
    assert clean_email("Ana@Bücher.Example") == "ana@bücher.example"
    assert clean_email("ana@xn--bcher-kva.example") == "ana@bücher.example"
