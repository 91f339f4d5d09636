"""Multi-touch attribution of won revenue to campaigns, and marketing's bonus. Pure.

A lead's touchpoints are its marketing touches up to the won deal, oldest first. Key touches:
the **first**; the **lead-creation** touch (the last one at or before the lead became an MQL);
the **opportunity** touch (the last one at or before sales accepted it); the **last**.

- first_touch: all to the first. last_touch: all to the last. linear: equal shares.
- u_shaped: 40 % first, 40 % lead creation, 20 % shared by the others.
- w_shaped: 30 % first, 30 % lead creation, 30 % opportunity, 10 % shared by the others.

When key touches coincide their shares add up; with no other touch to share the rest, the
key shares are scaled to sum to 1. Every deal's credit sums to exactly 1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from feedback.domain.funnel import LeadFacts, in_period, month_key

Model = Literal["first_touch", "last_touch", "linear", "u_shaped", "w_shaped"]
MODELS: tuple[Model, ...] = ("first_touch", "last_touch", "linear", "u_shaped", "w_shaped")
NO_CAMPAIGN = "(none)"
UNATTRIBUTED = "(unattributed)"


@dataclass(frozen=True)
class Touch:
    at: datetime
    kind: str
    campaign: str | None


def _last_at_or_before(touches: Sequence[Touch], at: datetime | None, default: int) -> int:
    if at is None:
        return default
    found = [i for i, t in enumerate(touches) if t.at <= at]
    return found[-1] if found else 0


def weights(
    touches: Sequence[Touch], model: Model, mql_at: datetime | None, sql_at: datetime | None
) -> list[float]:
    """One weight per touch (same order), summing to 1; empty without touches."""
    n = len(touches)
    if n == 0:
        return []
    if model == "linear":
        return [1 / n] * n
    first, last = 0, n - 1
    lead = _last_at_or_before(touches, mql_at, first)
    opportunity = _last_at_or_before(touches, sql_at, last)
    keys: list[tuple[int, float]]
    rest: float
    if model == "first_touch":
        keys, rest = [(first, 1.0)], 0.0
    elif model == "last_touch":
        keys, rest = [(last, 1.0)], 0.0
    elif model == "u_shaped":
        keys, rest = [(first, 0.4), (lead, 0.4)], 0.2
    else:
        keys, rest = [(first, 0.3), (lead, 0.3), (opportunity, 0.3)], 0.1
    result = [0.0] * n
    for index, share in keys:
        result[index] += share
    key_indices = {i for i, _ in keys}
    others = [i for i in range(n) if i not in key_indices]
    if others and rest:
        for i in others:
            result[i] += rest / len(others)
    else:
        total = sum(result)
        result = [w / total for w in result]
    return result


def credit(
    touches: Sequence[Touch], model: Model, mql_at: datetime | None, sql_at: datetime | None
) -> dict[str, float]:
    """Share of the deal per campaign."""
    shares: dict[str, float] = defaultdict(float)
    for touch, weight in zip(touches, weights(touches, model, mql_at, sql_at), strict=True):
        if weight > 0:
            shares[touch.campaign or NO_CAMPAIGN] += weight
    return dict(shares)


def attribute(
    leads: Iterable[LeadFacts],
    touches: dict[str, list[Touch]],
    start: datetime,
    end: datetime,
    model: Model,
) -> list[dict[str, Any]]:
    """Revenue of deals won in [start, end) credited to (month, campaign); deals without a
    marketing touchpoint go to ``(unattributed)``."""
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"revenue": 0.0, "deals": 0.0}
    )
    for lead in leads:
        if not in_period(lead.won_at, start, end):
            continue
        assert lead.won_at is not None
        amount = float(lead.amount or Decimal(0))
        before = [t for t in touches.get(lead.lead_id, []) if t.at <= lead.won_at]
        shares = credit(before, model, lead.mql_at, lead.sql_at) or {UNATTRIBUTED: 1.0}
        for campaign, share in shares.items():
            row = rows[(month_key(lead.won_at), campaign)]
            row["revenue"] += amount * share
            row["deals"] += share
    return [
        {"month": month, "campaign": campaign, **values}
        for (month, campaign), values in sorted(rows.items())
    ]


def by_campaign(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"revenue": 0.0, "deals": 0.0})
    for row in rows:
        totals[row["campaign"]]["revenue"] += row["revenue"]
        totals[row["campaign"]]["deals"] += row["deals"]
    return [{"campaign": c, **v} for c, v in sorted(totals.items())]


def bonus(rows: Iterable[dict[str, Any]], rate: float) -> list[dict[str, Any]]:
    """Marketing's bonus per month and campaign: rate × attributed revenue (unattributed
    revenue earns none)."""
    return [
        {
            "month": row["month"],
            "campaign": row["campaign"],
            "attributed_revenue": round(row["revenue"], 2),
            "bonus": round(row["revenue"] * rate, 2) if row["campaign"] != UNATTRIBUTED else 0.0,
        }
        for row in rows
    ]
