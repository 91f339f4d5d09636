"""What a live lead looks like to the model: its fields as configured, text-derived features
(title seniority, email domain type) and its behaviour (decayed activity counts).

A new attribute needs configuration (``LEADPACT_SCORING_FEATURES``), not code: attributes of
``lead.created`` are looked up by name, ``attributes`` included."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from scoring.domain.rules import Occurrence

SENIORITY = [
    ("c_level", re.compile(r"(?i)\b(chief|c[eto]o|cfo|cmo|founder|owner|president)\b")),
    ("vp", re.compile(r"(?i)\b(vp|vice[- ]president)\b")),
    ("director", re.compile(r"(?i)\b(director|head)\b")),
    ("manager", re.compile(r"(?i)\b(manager|lead)\b")),
]


def title_seniority(title: object) -> str | None:
    if not isinstance(title, str) or not title.strip():
        return None
    return next((level for level, pattern in SENIORITY if pattern.search(title)), "staff")


def email_domain_type(domain: object, free_mail: Iterable[str]) -> str | None:
    if not isinstance(domain, str) or not domain:
        return None
    return "free" if domain.lower() in {d.lower() for d in free_mail} else "business"


def activity_features(
    occurrences: Iterable[Occurrence], kinds: Iterable[str], half_life: timedelta, now: datetime
) -> dict[str, float]:
    """Per activity type: ``activity:<type>`` (decayed count) and ``days_since:<type>``."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    seen = list(occurrences)
    out: dict[str, float] = {}
    for kind in kinds:
        ages = [
            max(
                (
                    now
                    - (o.occurred_at if o.occurred_at.tzinfo else o.occurred_at.replace(tzinfo=UTC))
                ).total_seconds(),
                0.0,
            )
            for o in seen
            if o.activity == kind
        ]
        scale = max(half_life.total_seconds(), 1.0)
        out[f"activity:{kind}"] = sum(math.pow(0.5, age / scale) for age in ages)
        if ages:
            out[f"days_since:{kind}"] = min(ages) / 86400
    return out


def live_record(
    fields: Mapping[str, Any],
    occurrences: Iterable[Occurrence],
    *,
    activity_kinds: Iterable[str],
    half_life: timedelta,
    free_mail: Iterable[str],
    now: datetime,
) -> dict[str, Any]:
    """Everything a model may read about the lead, by feature name."""
    record: dict[str, Any] = dict(fields)
    # An erased lead keeps only the derived categories (scoring.domain.erasure).
    record["title_seniority"] = title_seniority(fields.get("title")) or fields.get(
        "title_seniority"
    )
    record["email_domain_type"] = email_domain_type(
        fields.get("email_domain"), free_mail
    ) or fields.get("email_domain_type")
    record.update(activity_features(occurrences, activity_kinds, half_life, now))
    return record
