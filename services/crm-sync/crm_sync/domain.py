"""The golden record's vocabulary: how a person's identifiers are normalised, and what one
source says about a person (an :class:`Observation`). Pure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import phonenumbers

# Fields a lead can contribute to the golden record.
PERSON_FIELDS = ("email", "phone", "first_name", "last_name", "company", "title", "country")
# Every field of the golden record that comes from a source.
RECORD_FIELDS = (*PERSON_FIELDS, "legal_name", "tax_id", "billing_address")
# What an erasure removes: everything that identifies or describes the person.
PERSONAL_FIELDS = RECORD_FIELDS
SYSTEMS = ("lead", "crm", "billing")


def email_key(email: str | None) -> str | None:
    """Emails compare case-insensitively and without surrounding blanks."""
    if not email or "@" not in email:
        return None
    return email.strip().lower()


def phone_key(phone: str | None, region: str | None = None) -> str | None:
    """E.164 when the number parses, so ``+34 612 34 56 78`` and ``+34612345678`` match."""
    if not phone:
        return None
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def tax_id_key(tax_id: str | None) -> str | None:
    """VAT and tax numbers compare without blanks, dots and dashes, in upper case:
    ``es b-1234567.8`` and ``ESB12345678`` are one."""
    if not tax_id:
        return None
    key = re.sub(r"[^0-9A-Za-z]", "", tax_id).upper()
    return key if len(key) >= 4 else None


# Pure and called for the same few values over and over (every candidate of every lead is
# prepared for comparison, blocking keys and conflicts fold the same names): cached.
@lru_cache(maxsize=1 << 16)
def fold(text: str | None) -> str:
    """Accents off, case folded, punctuation to blanks, blanks collapsed: ``García-López``
    → ``garcia lopez``."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^0-9a-z]+", " ", plain.casefold()).split())


def clean(text: Any) -> str | None:
    """A trimmed non-empty string, or None."""
    if text is None:
        return None
    value = " ".join(str(text).split())
    return value or None


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """``"Ana García López"`` → ``("Ana", "García López")``: first word, the rest."""
    parts = (name or "").split()
    if not parts:
        return None, None
    return parts[0], " ".join(parts[1:]) or None


@dataclass(frozen=True)
class Observation:
    """What one source record says about a person, normalised.

    ``ref`` names the record (``lead:L1``, ``stripe:cus_1``, ``crm:42``); ``system`` is the
    kind of source survivorship ranks (lead, crm = sales, billing); ``verified`` lists the
    fields the source vouches for (a billing email that receives invoices is verified)."""

    system: str
    ref: str
    fields: dict[str, str]
    observed_at: datetime
    verified: frozenset[str] = field(default_factory=frozenset)


def observation(
    system: str,
    ref: str,
    observed_at: datetime,
    raw: dict[str, Any],
    *,
    region: str | None = None,
    verified: frozenset[str] = frozenset(),
) -> Observation:
    """Normalise raw values: keys for email, phone and tax id, trimmed text for the rest."""
    fields: dict[str, str] = {}
    country = clean(raw.get("country"))
    for name in RECORD_FIELDS:
        value: str | None
        if name == "email":
            value = email_key(raw.get(name))
        elif name == "phone":
            value = phone_key(raw.get(name), region or (country.upper() if country else None))
        elif name == "tax_id":
            value = tax_id_key(raw.get(name))
        elif name == "country":
            value = country.upper() if country and len(country) == 2 else None
        else:
            value = clean(raw.get(name))
        if value:
            fields[name] = value
    return Observation(system, ref, fields, observed_at, verified & frozenset(fields))


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


def merge_from_lead(current: dict[str, Any], incoming: dict[str, Any]) -> list[FieldChange]:
    """Fill the record's blanks from a lead; a different non-empty value is left as it is
    (the first source that filled it wins until billing or a person says otherwise)."""
    changes = []
    for name in PERSON_FIELDS:
        new = incoming.get(name)
        if new in (None, "") or current.get(name) not in (None, ""):
            continue
        changes.append(FieldChange(name, current.get(name), new))
    return changes
