"""The contract's MQL rules applied to one lead: points with their reasons, disqualifiers,
and the tier."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadpact.contract import ActivityRule, Contract, FieldRule
from leadpact.events import Tier


@dataclass(frozen=True)
class Occurrence:
    """One behavioural signal of a lead (a ``lead.activity``)."""

    activity: str
    occurred_at: datetime


@dataclass(frozen=True)
class RuleOutcome:
    """Points from the rules, why, and the disqualifier that fired (if any)."""

    points: int
    reasons: list[str] = field(default_factory=list)
    disqualified_by: str | None = None


def lead_fields(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The fields rules may name: the lead's own, its free-form attributes, and derived ones
    (``email_domain``)."""
    fields: dict[str, Any] = dict(lead.get("attributes") or {})
    fields.update({k: v for k, v in lead.items() if k != "attributes"})
    email = fields.get("email")
    if isinstance(email, str) and "@" in email:
        fields["email_domain"] = email.rsplit("@", 1)[1].strip().lower()
    return fields


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _same(a: Any, b: Any) -> bool:
    # Contract authors write lists in lower case; data arrives in any case.
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return bool(a == b)


def field_rule_holds(
    rule: FieldRule, fields: Mapping[str, Any], lists: Mapping[str, list[str]]
) -> bool:
    """Whether ``rule`` holds for the lead; a missing field never holds."""
    value = fields.get(rule.field)
    if value is None or value == "":
        return False
    if rule.matches is not None:
        return re.search(rule.matches, str(value)) is not None
    if rule.gte is not None or rule.lte is not None:
        number = _number(value)
        if number is None:
            return False
        return (rule.gte is None or number >= rule.gte) and (rule.lte is None or number <= rule.lte)
    if rule.equals is not None:
        return _same(value, rule.equals)
    if rule.in_ is not None:
        return any(_same(value, item) for item in rule.in_)
    if rule.in_list is not None:
        return any(_same(value, item) for item in lists.get(rule.in_list, []))
    return False


def activity_points(rule: ActivityRule, occurrences: Iterable[Occurrence], now: datetime) -> float:
    """Points of one activity rule: each occurrence is worth ``points``, halved every
    ``half_life`` since it happened; the total is capped at ``max``."""
    total = 0.0
    for occurrence in occurrences:
        if occurrence.activity != rule.activity:
            continue
        weight = 1.0
        if rule.half_life is not None and rule.half_life.total_seconds() > 0:
            age = max((_aware(now) - _aware(occurrence.occurred_at)).total_seconds(), 0.0)
            weight = math.pow(0.5, age / rule.half_life.total_seconds())
        total += rule.points * weight
    if rule.max is not None:
        total = min(total, float(rule.max))
    return total


def _aware(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; everything we store is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _signed(points: int) -> str:
    return f"+{points}" if points >= 0 else str(points)


def apply_rules(
    contract: Contract,
    fields: Mapping[str, Any],
    occurrences: Iterable[Occurrence],
    now: datetime,
) -> RuleOutcome:
    """Disqualifiers first; then every points rule that holds adds its points."""
    lists = contract.lists
    for disqualifier in contract.mql.disqualify:
        if field_rule_holds(disqualifier, fields, lists):
            field = disqualifier.field
            return RuleOutcome(0, [f"disqualified {field}: {fields.get(field)}"], field)
    seen = list(occurrences)
    points = 0
    reasons: list[str] = []
    for rule in contract.mql.points:
        if isinstance(rule, FieldRule):
            if field_rule_holds(rule, fields, lists):
                points += rule.points
                reasons.append(f"{_signed(rule.points)} {rule.field}: {fields.get(rule.field)}")
        else:
            earned = round(activity_points(rule, seen, now))
            if earned:
                count = sum(1 for o in seen if o.activity == rule.activity)
                points += earned
                reasons.append(f"{_signed(earned)} activity: {rule.activity} x{count}")
    return RuleOutcome(points, reasons)


def decide_tier(contract: Contract, outcome: RuleOutcome, probability: float | None) -> Tier:
    """Disqualified beats everything; an MQL needs the points and, when a model gave a
    probability, the contract's minimum probability too (with no model the rules decide)."""
    if outcome.disqualified_by is not None:
        return "disqualified"
    if outcome.points < contract.mql.threshold_points:
        return "nurture"
    floor = contract.mql.min_probability
    if probability is not None and floor is not None and probability < floor:
        return "nurture"
    return "mql"


def worth_announcing(
    previous: tuple[Tier, int] | None, tier: Tier, points: int, min_move: int
) -> bool:
    """A first score is always announced; a re-score only when the tier changed or the points
    moved by at least ``min_move``."""
    if previous is None:
        return True
    old_tier, old_points = previous
    return old_tier != tier or abs(points - old_points) >= min_move
