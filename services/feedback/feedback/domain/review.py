"""The quarterly contract review. Pure: the store loads the facts, this judges and renders.

Definitions (one place, used by the API, the page, the CSV and the tests):

- A quarter ``2026-Q4`` is ``[2026-10-01, 2027-01-01)`` in UTC, judged under the contract in
  force on its first day. Its **MQL cohort** is the leads that became an MQL in the quarter;
  outcomes are followed as known at ``now`` (like the KPIs).
- **first_contact**: compliance = MQLs contacted without a ``first_contact`` breach / MQLs
  contacted or breached. Met when compliance ≥ the compliance target.
- **attempts**: a cohort MQL is judged once its attempts window (``attempts.within`` after the
  MQL) has closed by ``now``, or it was decided (accepted, rejected or won), or it breached
  the clause; compliance = judged without an ``attempts`` breach / judged. Met when
  compliance ≥ the compliance target. The others are ``pending``.
- **outcome**: judged when decided (accepted, rejected or won) or breached; compliance =
  decided without an ``outcome`` breach / judged; met when ≥ the compliance target.
- **mql_volume**: cohort MQLs vs the monthly target prorated over the quarter (three full
  months: 3 × target); each month is shown with its own count and target. Met when the
  quarter's MQLs ≥ its target.
- **marketing_revenue_share**: revenue of deals won in the quarter from leads that were MQLs /
  revenue of every deal won in the quarter; met when ≥ the contract's target.
  A clause with nothing to judge (no contacted MQL, no revenue, no target) is ``met: null``.
- **Score deciles**: the cohort's MQL points (the points of the score that made it an MQL)
  sorted ascending; the boundaries are the points at ranks ⌊k·n/10⌋ for k = 0…9, duplicates
  merged (ties never straddle two bands). Band k holds the MQLs with
  ``boundary_k ≤ points < boundary_k+1`` (the last band is open above).
- **Suggested threshold**: the lowest band boundary from which *every* band at or above it
  converts at or above the floor (``conversion_floor``, on ``threshold_metric``: MQL→SQL by
  default). With all bands above the floor the suggestion is the current threshold (leads
  below it were never MQLs, so there is no evidence to lower it); when even the top band is
  below the floor there is no suggestion (``null``).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from feedback.domain.funnel import LeadFacts, in_period, month_key, prorated_target, ratio

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
Metric = Literal["mql_to_sql", "mql_to_customer"]


def parse_quarter(text: str) -> tuple[datetime, datetime]:
    """``2026-Q4`` → its ``[start, end)`` in UTC; ValueError naming the field."""
    match = _QUARTER.match(text.strip())
    if not match:
        raise ValueError(f"quarter: {text!r} is not a quarter like 2026-Q4")
    year, q = int(match[1]), int(match[2])
    if year < 2000 or year > 2999:
        raise ValueError(f"quarter: {text!r}: year out of range")
    start = datetime(year, 3 * q - 2, 1, tzinfo=UTC)
    end = (
        datetime(year + 1, 1, 1, tzinfo=UTC) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=UTC)
    )
    return start, end


@dataclass(frozen=True)
class Terms:
    """The contract's clauses as the review reads them, plus the review's own settings."""

    version: str
    first_contact_within: timedelta | None
    attempts_within: timedelta | None
    min_attempts: int | None
    decide_within: timedelta | None
    monthly_mql_target: int | None
    marketing_share_target: float | None
    threshold_points: int | None
    compliance_target: float
    conversion_floor: float
    threshold_metric: Metric = "mql_to_sql"


def _met(value: float | None, target: float | None) -> bool | None:
    if value is None or target is None:
        return None
    return value >= target


def _decided(lead: LeadFacts) -> bool:
    return bool(lead.sql_at or lead.rejected_at or lead.won_at)


def _sales_clause(
    name: str, description: str, judged: list[LeadFacts], breached: int, pending: int, target: float
) -> dict[str, Any]:
    met_count = len(judged) - breached
    value = ratio(met_count, len(judged))
    return {
        "clause": name,
        "description": description,
        "target": target,
        "value": value,
        "met": _met(value, target),
        "judged": len(judged),
        "met_count": met_count,
        "breached": breached,
        "pending": pending,
    }


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "–"
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def clauses(
    leads: Sequence[LeadFacts], start: datetime, end: datetime, now: datetime, terms: Terms
) -> list[dict[str, Any]]:
    cohort = [lead for lead in leads if in_period(lead.mql_at, start, end)]
    target = terms.compliance_target

    fc_judged = [x for x in cohort if x.first_contact_at or "first_contact" in x.breaches]
    fc = _sales_clause(
        "first_contact",
        f"first contact within {_duration(terms.first_contact_within)} of the MQL",
        fc_judged,
        sum(1 for x in fc_judged if "first_contact" in x.breaches),
        len(cohort) - len(fc_judged),
        target,
    )

    def attempts_judged(lead: LeadFacts) -> bool:
        closed = (
            terms.attempts_within is not None
            and lead.mql_at is not None
            and lead.mql_at + terms.attempts_within <= now
        )
        return closed or _decided(lead) or "attempts" in lead.breaches

    at_judged = [x for x in cohort if attempts_judged(x)]
    attempts = _sales_clause(
        "attempts",
        f"{terms.min_attempts or '–'} attempts within {_duration(terms.attempts_within)}",
        at_judged,
        sum(1 for x in at_judged if "attempts" in x.breaches),
        len(cohort) - len(at_judged),
        target,
    )

    out_judged = [x for x in cohort if _decided(x) or "outcome" in x.breaches]
    outcome = _sales_clause(
        "outcome",
        f"accepted or rejected within {_duration(terms.decide_within)}",
        out_judged,
        sum(1 for x in out_judged if "outcome" in x.breaches),
        len(cohort) - len(out_judged),
        target,
    )

    months = []
    monthly = terms.monthly_mql_target
    cursor = start
    while cursor < end:
        days = calendar.monthrange(cursor.year, cursor.month)[1]
        stop = min(end, cursor + timedelta(days=days))
        count = sum(1 for x in cohort if in_period(x.mql_at, cursor, stop))
        month_target = prorated_target(monthly, cursor, stop) if monthly is not None else None
        months.append(
            {
                "month": month_key(cursor),
                "mqls": count,
                "target": month_target,
                "met": _met(count, month_target),
            }
        )
        cursor = stop
    volume_target = prorated_target(monthly, start, end) if monthly is not None else None
    volume = {
        "clause": "mql_volume",
        "description": f"{monthly if monthly is not None else '–'} MQLs a month",
        "target": volume_target,
        "value": len(cohort),
        "met": _met(len(cohort), volume_target),
        "months": months,
    }

    won = [x for x in leads if in_period(x.won_at, start, end)]
    total = sum((x.amount or Decimal(0) for x in won), Decimal(0))
    marketing = sum((x.amount or Decimal(0) for x in won if x.mql_at), Decimal(0))
    share = ratio(marketing, total)
    revenue = {
        "clause": "marketing_revenue_share",
        "description": "share of new revenue from marketing's MQLs",
        "target": terms.marketing_share_target,
        "value": share,
        "met": _met(share, terms.marketing_share_target),
        "marketing_revenue": float(marketing),
        "total_revenue": float(total),
    }
    return [fc, attempts, outcome, volume, revenue]


def deciles(cohort: Sequence[LeadFacts]) -> list[dict[str, Any]]:
    """Conversion of the cohort by band of MQL points (see the module docstring)."""
    scored = sorted(lead.points for lead in cohort if lead.points is not None)
    n = len(scored)
    if not n:
        return []
    starts: list[tuple[int, int]] = []  # (decile number, boundary)
    for k in range(10):
        boundary = scored[k * n // 10]
        if not starts or boundary != starts[-1][1]:
            starts.append((k + 1, boundary))
    bands = []
    for i, (decile, low) in enumerate(starts):
        high = starts[i + 1][1] if i + 1 < len(starts) else None
        members = [
            lead
            for lead in cohort
            if lead.points is not None
            and lead.points >= low
            and (high is None or lead.points < high)
        ]
        sqls = sum(1 for lead in members if lead.sql_at)
        customers = sum(1 for lead in members if lead.won_at)
        bands.append(
            {
                "decile": decile,
                "from_points": low,
                "to_points": high,
                "mqls": len(members),
                "sqls": sqls,
                "customers": customers,
                "mql_to_sql": ratio(sqls, len(members)),
                "mql_to_customer": ratio(customers, len(members)),
            }
        )
    return bands


def suggest_threshold(
    bands: Sequence[dict[str, Any]], current: int | None, floor: float, metric: Metric
) -> int | None:
    """The lowest band boundary from which every band converts at or above ``floor``."""
    suggested: int | None = None
    for band in reversed(bands):
        value = band[metric]
        if value is None or value < floor:
            break
        suggested = band["from_points"]
    if suggested is None:
        return None
    if suggested == bands[0]["from_points"] and current is not None:
        return current  # every band converts: no evidence below the current threshold
    return max(suggested, current) if current is not None else suggested


def review(
    quarter: str,
    leads: Iterable[LeadFacts],
    start: datetime,
    end: datetime,
    now: datetime,
    terms: Terms,
) -> dict[str, Any]:
    leads = list(leads)
    cohort = [lead for lead in leads if in_period(lead.mql_at, start, end)]
    judged = clauses(leads, start, end, now, terms)
    bands = deciles(cohort)
    suggested = suggest_threshold(
        bands, terms.threshold_points, terms.conversion_floor, terms.threshold_metric
    )
    kept = [x for x in cohort if suggested is not None and (x.points or 0) >= suggested]
    sqls = sum(1 for x in cohort if x.sql_at)
    customers = sum(1 for x in cohort if x.won_at)
    verdicts = [c["met"] for c in judged]
    return {
        "quarter": quarter,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "generated_at": now.isoformat(),
        "contract_version": terms.version,
        "compliance_target": terms.compliance_target,
        "clauses": judged,
        "all_met": all(v is True for v in verdicts),
        "conversion": {
            "mqls": len(cohort),
            "sqls": sqls,
            "customers": customers,
            "mql_to_sql": ratio(sqls, len(cohort)),
            "mql_to_customer": ratio(customers, len(cohort)),
        },
        "deciles": bands,
        "threshold": {
            "current": terms.threshold_points,
            "suggested": suggested,
            "metric": terms.threshold_metric,
            "floor": terms.conversion_floor,
            "mqls_at_or_above": len(kept) if suggested is not None else None,
            "rule": "the lowest score-band boundary from which every band's "
            f"{terms.threshold_metric.replace('_', ' ')} stays at or above "
            f"{terms.conversion_floor:.0%}; never below the current threshold",
        },
    }
