"""The golden record's rules: how a person is recognised and which values survive. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import phonenumbers

# Fields a lead can contribute to the golden record.
PERSON_FIELDS = ("email", "phone", "first_name", "last_name", "company", "title", "country")


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
