"""Erasure of a person (``privacy.erased``): which lead fields are personal, how a person is
recognised by the hash of their email, and whether an archived payload mentions them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

ERASED_BODY = b""
"""What an archived payload of an erased person becomes (the row, its channel, outcome and
times stay: the archive still counts what arrived)."""

ERASED_OUTCOME = "erased"
"""Outcome of an archived payload once blanked: ``intake replay`` never selects it."""


def subject_hash(email: str | None) -> str | None:
    """sha256 hex of the normalised (trimmed, lower-cased) email, as ``privacy.erased`` and
    crm-sync compute it; None without an email."""
    if not email or not email.strip():
        return None
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def erased_lead_values() -> dict[str, Any]:
    """The columns of a lead that describe the person, blanked.

    Kept: company (the account, not the person), company size, industry, country, source and
    campaign, the platform reference, timestamps and flags: the funnel still counts the lead.
    """
    return {
        "email": None,
        "email_hash": None,
        "phone": None,
        "first_name": None,
        "last_name": None,
        "title": None,
        "consent": None,
        "attributes": {},
    }


def mentions(body: bytes, needles: Iterable[str]) -> bool:
    """Whether ``body`` names one of ``needles`` (case-insensitive; JSON or form-encoded)."""
    wanted = [n.strip().lower() for n in needles if n and n.strip()]
    if not wanted:
        return False
    text = body.decode("utf-8", errors="replace").lower()
    forms = (text, unquote_plus(text))
    return any(n in form for n in wanted for form in forms)


def erased_event_data(topic: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event of an erased lead still waiting in the outbox, without the person: it is
    still published (the funnel counts the lead) but names no one."""
    if topic != "lead.created":
        return data  # lead.activity (resubmission) carries a raw ref, channel and source
    blank = {k: v for k, v in erased_lead_values().items() if k != "email_hash"}
    return {**data, **blank}
