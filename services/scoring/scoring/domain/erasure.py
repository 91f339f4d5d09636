"""Erasure of a person (``privacy.erased``) in scoring: what of a lead's fields may stay (the
numbers and coarse categories the rules and the model read, none of which names anyone) and
how the reasons of its scores are rid of the values that did.

Rule: a number or a flag stays; a text stays only when it is one of ``KEPT_TEXT`` (a
category from a short list: industry, country, ...); the title becomes its seniority and the
email domain its type (free or business) first, so that the lead still trains the model.
Everything else (email, phone, names, title, company, free-text attributes) goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scoring.features import email_domain_type, title_seniority

KEPT_TEXT = frozenset(
    {"industry", "country", "created_at", "title_seniority", "email_domain_type", "source"}
)
ERASED = "[erased]"
BEHAVIOUR_PREFIXES = ("activity:", "days_since:")
_FIELD_REASON = re.compile(
    r"^(?P<head>(?:[+-]\S+|disqualified) (?P<field>[\w:.-]+): )(?P<value>.*)$"
)


@dataclass(frozen=True)
class ErasedFields:
    fields: dict[str, Any]
    removed: list[str]
    """Every text value taken out: what the reasons must not quote any more."""


def erase_fields(fields: Mapping[str, Any], free_mail: Iterable[str]) -> ErasedFields:
    derived = {
        "title_seniority": fields.get("title_seniority") or title_seniority(fields.get("title")),
        "email_domain_type": fields.get("email_domain_type")
        or email_domain_type(fields.get("email_domain"), free_mail),
    }
    kept: dict[str, Any] = {}
    removed: list[str] = []
    for name, value in {**fields, **derived}.items():
        if value is None:
            continue
        if isinstance(value, bool | int | float) or (name in KEPT_TEXT and isinstance(value, str)):
            kept[name] = value
        else:
            removed.extend(_texts(value))
    return ErasedFields(kept, removed)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list | tuple | set):
        return [t for v in value for t in _texts(v)]
    return []


def redact_reasons(reasons: Iterable[str], removed: Iterable[str]) -> list[str]:
    """Reasons without the person: a rule's quoted value becomes ``[erased]`` unless its field
    is one that stays, and any removed text still quoted elsewhere is replaced too."""
    needles = sorted({r.strip() for r in removed if len(r.strip()) >= 2}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(n) for n in needles), re.I) if needles else None
    out: list[str] = []
    for reason in reasons:
        match = _FIELD_REASON.match(reason)
        if match and not _harmless(match["field"], match["value"]):
            reason = match["head"] + ERASED
        if pattern is not None:
            reason = pattern.sub(ERASED, reason)
        out.append(reason)
    return out


def _harmless(field: str, value: str) -> bool:
    """A quoted value that names no one: a kept category, an activity, a number."""
    if field in KEPT_TEXT or field == "activity" or field.startswith(BEHAVIOUR_PREFIXES):
        return True
    return _is_number(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
