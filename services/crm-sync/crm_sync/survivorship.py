"""Survivorship: which source's value of each field the golden record shows, and where the
sources disagree. Pure.

Rules per field: billing is the authority for the legal name, tax id and billing address;
sales (the CRM, then the lead forms sales works from) for title and direct phone; the newest
verified value for email; every other field keeps the first value seen. No value is ever
overwritten silently: every source's value is kept as a candidate, and a field whose
candidates disagree is a conflict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_sync.domain import fold


@dataclass(frozen=True)
class Candidate:
    field: str
    value: str
    system: str
    ref: str
    verified: bool
    observed_at: datetime


@dataclass(frozen=True)
class Rule:
    name: str  # authority | newest_verified | first_seen
    order: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"authority:{'>'.join(self.order)}" if self.name == "authority" else self.name


BILLING_FIRST = Rule("authority", ("billing", "crm", "lead"))
SALES_FIRST = Rule("authority", ("crm", "lead", "billing"))
RULES: dict[str, Rule] = {
    "legal_name": BILLING_FIRST,
    "tax_id": BILLING_FIRST,
    "billing_address": BILLING_FIRST,
    "title": SALES_FIRST,
    "phone": SALES_FIRST,
    "email": Rule("newest_verified"),
}
DEFAULT_RULE = Rule("first_seen")


@dataclass(frozen=True)
class Survivor:
    field: str
    value: str
    system: str
    ref: str
    rule: str
    observed_at: datetime


@dataclass(frozen=True)
class FieldConflict:
    field: str
    chosen: str
    rule: str
    candidates: tuple[Candidate, ...]


def _ts(c: Candidate) -> float:
    return c.observed_at.timestamp()


def choose(rule: Rule, candidates: list[Candidate]) -> Candidate:
    """The surviving candidate of one field (``candidates`` is not empty)."""
    if rule.name == "authority":
        rank = {system: i for i, system in enumerate(rule.order)}
        return min(candidates, key=lambda c: (rank.get(c.system, len(rank)), -_ts(c), c.ref))
    if rule.name == "newest_verified":
        verified = [c for c in candidates if c.verified]
        if verified:
            return min(verified, key=lambda c: (-_ts(c), c.ref))
    return min(candidates, key=lambda c: (_ts(c), c.ref))


def survive(
    candidates: list[Candidate], rules: dict[str, Rule] | None = None
) -> tuple[dict[str, Survivor], list[FieldConflict]]:
    """Apply each field's rule; list the fields whose sources hold different values."""
    rules = RULES if rules is None else rules
    by_field: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_field.setdefault(c.field, []).append(c)
    chosen: dict[str, Survivor] = {}
    conflicts: list[FieldConflict] = []
    for name in sorted(by_field):
        group = by_field[name]
        rule = rules.get(name, DEFAULT_RULE)
        best = choose(rule, group)
        chosen[name] = Survivor(
            name, best.value, best.system, best.ref, rule.describe(), best.observed_at
        )
        if len({fold(c.value) or c.value for c in group}) > 1:
            ordered = tuple(sorted(group, key=lambda c: (_ts(c), c.ref)))
            conflicts.append(FieldConflict(name, best.value, rule.describe(), ordered))
    return chosen, conflicts
