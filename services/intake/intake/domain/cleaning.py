"""Turning what people type into forms into clean, comparable values."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def clean_email(raw: str) -> str:
    """Syntax-checked, domain lower-cased and IDNA-normalised; the local part is lower-cased
    too, because two leads differing only in its case are the same person in practice."""
    text = raw.strip()
    quick = _plain_address(text)
    if quick is not None:
        return quick
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return checked.normalized.lower()


PLAIN_ADDRESS = re.compile(
    r"([a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*)"
    r"@([a-zA-Z0-9.\-]+)"
)
"""An unquoted ASCII local part (RFC 5322 dot-atom, as email-validator reads it) and a
domain of hostname characters: what nearly every form sends."""

EMAIL_MAX_LENGTH = 254


def _plain_address(text: str) -> str | None:
    """``clean_email`` of a plain ASCII address, computed as email-validator would, or None
    when the address is anything else (then email-validator itself decides).

    email-validator judges the local part and the domain separately and then the total
    length; a dot-atom ASCII local part it accepts unchanged. Its domain check (IDNA, special
    use names, TLD rules) is most of its cost and the same for every lead of a domain, so
    that part is asked once per domain (tested equal to validate_email on generated
    addresses)."""
    match = PLAIN_ADDRESS.fullmatch(text)
    if match is None:
        return None
    local, domain = match.groups()
    normalized = _domain(domain)
    if normalized is None or len(local) + 1 + len(normalized) > EMAIL_MAX_LENGTH:
        return None
    return f"{local}@{normalized}".lower()


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normalised (and ASCII) domain, or None when email-validator refuses it."""
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    if checked.domain != checked.ascii_domain:
        return None  # an IDNA domain: its lengths differ by encoding, let the full check judge
    return str(checked.domain)


def clean_phone(raw: str, default_region: str) -> str:
    """E.164 (``+34612345678``); numbers without ``+`` are read in ``default_region``."""
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number for region {default_region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_country(raw: str) -> str:
    """ISO 3166-1 alpha-2 from an alpha-2, alpha-3, or English name ("Spain", "ESP")."""
    text = raw.strip()
    if not text:
        raise ValueError("empty country")
    try:
        country = pycountry.countries.lookup(text)
    except LookupError:
        country = _fuzzy_country(text)
    return str(country.alpha_2)


def _fuzzy_country(text: str) -> Any:
    try:
        return pycountry.countries.search_fuzzy(text)[0]
    except LookupError as exc:
        raise ValueError(f"unknown country {text!r}; use ISO 3166 (e.g. ES)") from exc


def clean_name(raw: str | None) -> str | None:
    """Trimmed, inner runs of whitespace collapsed; blank is no name."""
    if raw is None:
        return None
    collapsed = " ".join(raw.split())
    return collapsed or None


def split_full_name(full: str) -> tuple[str | None, str | None]:
    """ "Ana María García" → ("Ana", "María García"): forms with one name box need this."""
    parts = full.split(maxsplit=1)
    if not parts:
        return None, None
    return parts[0], parts[1] if len(parts) > 1 else None


def utm_from_url(url: str) -> dict[str, str]:
    """The ``utm_*`` parameters of a landing page URL (first value of each)."""
    query = parse_qs(urlsplit(url).query)
    return {key: values[0] for key in UTM_KEYS if (values := query.get(key)) and values[0]}
