"""Funnel KPIs from per-lead facts. Pure: the store loads the facts, this computes.

Definitions (one place, used by the API, the report and the tests):

- A period is ``[start, end)`` in UTC. Its **MQL cohort** is the leads that became an MQL in
  the period; conversions follow that cohort to its outcomes as known now:
  MQL→SQL = accepted / MQLs, SQL→customer = won / accepted, MQL→customer = won / MQLs.
- **MQL target**: the contract's ``volume.monthly_mql_target`` prorated by the days of each
  calendar month the period (or the group's month) covers.
- **Time to first contact**: first contact − MQL time (never negative), median and mean, over
  the cohort's contacted MQLs.
- **SLA compliance** (first contact): MQLs contacted without a ``first_contact`` breach /
  MQLs either contacted or breached. ``breaches`` counts every clause breached.
- **CAC**: ad spend of the period (of the group's source, campaign or month) / customers won
  from the cohort; null without a customer or for owner groups (spend has no owner).
- **Marketing revenue share**: revenue of deals won in the period from leads that were MQLs
  (marketing-sourced) / revenue of every deal won in the period; target from the contract.
- **Lifecycle time**: days from lead creation (MQL time when unknown) to the won deal, median
  over the cohort's customers.
"""

from __future__ import annotations

import calendar
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

GroupBy = Literal["source", "campaign", "owner", "month"]
NONE_KEY = "(none)"


@dataclass(frozen=True)
class LeadFacts:
    lead_id: str
    created_at: datetime | None = None
    source: str | None = None
    campaign: str | None = None
    owner: str | None = None
    mql_at: datetime | None = None
    first_contact_at: datetime | None = None
    sql_at: datetime | None = None
    rejected_at: datetime | None = None
    reject_reason: str | None = None
    won_at: datetime | None = None
    lost_at: datetime | None = None
    amount: Decimal | None = None
    points: int | None = None
    breaches: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Spend:
    day: date
    source: str
    campaign: str
    amount: Decimal


@dataclass(frozen=True)
class Targets:
    monthly_mql_target: int | None
    marketing_share_target: float | None


def month_key(at: datetime | date) -> str:
    if isinstance(at, datetime):
        at = at.astimezone(UTC)
    return f"{at.year:04d}-{at.month:02d}"


def in_period(at: datetime | None, start: datetime, end: datetime) -> bool:
    return at is not None and start <= at < end


def group_of(lead: LeadFacts, group_by: GroupBy | None) -> str:
    if group_by is None:
        return "all"
    if group_by == "month":
        return month_key(lead.mql_at) if lead.mql_at else NONE_KEY
    value = getattr(lead, group_by)
    return str(value) if value else NONE_KEY


def spend_group(row: Spend, group_by: GroupBy | None) -> str | None:
    if group_by is None:
        return "all"
    if group_by == "owner":
        return None
    if group_by == "month":
        return month_key(row.day)
    value = row.source if group_by == "source" else row.campaign
    return value or NONE_KEY


def prorated_target(monthly: int, start: datetime, end: datetime) -> float:
    """The monthly target scaled by the share of each calendar month in [start, end)."""
    total = 0.0
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while cursor < end:
        days = calendar.monthrange(cursor.year, cursor.month)[1]
        month_start = cursor.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        next_month = month_start + timedelta(days=days)
        stop = min(end, next_month)
        total += monthly * (stop - cursor) / timedelta(days=days)
        cursor = stop
    return total


def ratio(num: float | int | Decimal, den: float | int | Decimal) -> float | None:
    return float(num) / float(den) if den else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def group_kpis(
    cohort: Sequence[LeadFacts],
    won_in_period: Sequence[LeadFacts],
    total_new_revenue: Decimal,
    spend: Decimal | None,
    targets: Targets,
    mql_target: float | None,
) -> dict[str, Any]:
    """KPIs of one group: its MQL cohort, its deals won in the period, its spend."""
    mqls = len(cohort)
    sqls = sum(1 for lead in cohort if lead.sql_at)
    won = [lead for lead in cohort if lead.won_at]
    lost = sum(1 for lead in cohort if lead.lost_at and not lead.won_at)
    rejected = [lead for lead in cohort if lead.rejected_at and lead.reject_reason]
    first_contacts = [
        max(0.0, (lead.first_contact_at - lead.mql_at).total_seconds())
        for lead in cohort
        if lead.first_contact_at and lead.mql_at
    ]
    fc_breached = sum(1 for lead in cohort if "first_contact" in lead.breaches)
    fc_met = sum(
        1 for lead in cohort if lead.first_contact_at and "first_contact" not in lead.breaches
    )
    breaches = Counter(clause for lead in cohort for clause in lead.breaches)
    marketing_revenue = sum(
        (lead.amount or Decimal(0) for lead in won_in_period if lead.mql_at), Decimal(0)
    )
    lifecycle = [
        (won_at - born).total_seconds() / 86400
        for lead in won
        if (won_at := lead.won_at) and (born := lead.created_at or lead.mql_at)
    ]
    return {
        "mqls": mqls,
        "mql_target": round(mql_target, 2) if mql_target is not None else None,
        "mql_target_attainment": ratio(mqls, mql_target) if mql_target else None,
        "sqls": sqls,
        "customers": len(won),
        "lost": lost,
        "rejected": len(rejected),
        "mql_to_sql": ratio(sqls, mqls),
        "sql_to_customer": ratio(len(won), sqls),
        "mql_to_customer": ratio(len(won), mqls),
        "won_revenue": float(sum((lead.amount or Decimal(0) for lead in won), Decimal(0))),
        "time_to_first_contact_seconds": {
            "median": _median(first_contacts),
            "mean": _mean(first_contacts),
            "contacted": len(first_contacts),
        },
        "sla_compliance": ratio(fc_met, fc_met + fc_breached),
        "sla_breaches": dict(sorted(breaches.items())),
        "rejection_reasons": dict(
            sorted(Counter(lead.reject_reason for lead in rejected if lead.reject_reason).items())
        ),
        "spend": float(spend) if spend is not None else None,
        "cac": ratio(spend, len(won)) if spend is not None and won else None,
        "new_revenue_from_marketing": float(marketing_revenue),
        "marketing_revenue_share": ratio(marketing_revenue, total_new_revenue),
        "marketing_revenue_share_target": targets.marketing_share_target,
        "lifecycle_days_median": _median(lifecycle),
    }


def kpis(
    leads: Iterable[LeadFacts],
    spend: Iterable[Spend],
    start: datetime,
    end: datetime,
    group_by: GroupBy | None,
    targets: Targets,
) -> dict[str, Any]:
    """Totals and, with ``group_by``, one KPI block per group (sorted by key)."""
    leads = list(leads)
    spend = list(spend)
    cohort = [lead for lead in leads if in_period(lead.mql_at, start, end)]
    won_in_period = [lead for lead in leads if in_period(lead.won_at, start, end)]
    total_revenue = sum((lead.amount or Decimal(0) for lead in won_in_period), Decimal(0))
    monthly = targets.monthly_mql_target

    def block(key: str | None, by: GroupBy | None, target: float | None) -> dict[str, Any]:
        members = [lead for lead in cohort if key is None or group_of(lead, by) == key]
        closed = [lead for lead in won_in_period if key is None or group_of(lead, by) == key]
        spent: Decimal | None = None
        if by != "owner":
            spent = sum(
                (s.amount for s in spend if key is None or spend_group(s, by) == key), Decimal(0)
            )
        return group_kpis(members, closed, total_revenue, spent, targets, target)

    total_target = prorated_target(monthly, start, end) if monthly is not None else None
    result: dict[str, Any] = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": group_by,
        "totals": block(None, None, total_target),
        "groups": [],
    }
    if group_by is not None:
        keys = {group_of(lead, group_by) for lead in [*cohort, *won_in_period]}
        keys |= {k for s in spend if (k := spend_group(s, group_by)) is not None}
        for key in sorted(keys):
            target = None
            if group_by == "month" and monthly is not None and key != NONE_KEY:
                year, month = (int(p) for p in key.split("-"))
                m_start = datetime(year, month, 1, tzinfo=UTC)
                m_end = m_start + timedelta(days=calendar.monthrange(year, month)[1])
                target = prorated_target(monthly, max(start, m_start), min(end, m_end))
            result["groups"].append({"key": key, **block(key, group_by, target)})
    return result


def stages(leads: Iterable[LeadFacts], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The TOFU/MOFU/BOFU table: each step counted by its own date in the period, with the
    conversion from the step before."""
    leads = list(leads)
    counts = [
        ("TOFU", "leads", sum(in_period(lead.created_at, start, end) for lead in leads)),
        ("MOFU", "mqls", sum(in_period(lead.mql_at, start, end) for lead in leads)),
        ("MOFU", "sqls", sum(in_period(lead.sql_at, start, end) for lead in leads)),
        ("BOFU", "customers", sum(in_period(lead.won_at, start, end) for lead in leads)),
    ]
    rows: list[dict[str, Any]] = []
    previous: int | None = None
    for stage, step, count in counts:
        rows.append(
            {
                "stage": stage,
                "step": step,
                "count": count,
                "conversion_from_previous": ratio(count, previous) if previous else None,
            }
        )
        previous = count
    return rows


def _month_index(at: datetime | date) -> int:
    return at.year * 12 + at.month - 1


def cohorts(
    leads: Iterable[LeadFacts], start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """One row per MQL month: size, SQLs, customers, revenue, and the cumulative share of
    the cohort won by months since its MQL month (0, 1, … up to now)."""
    by_month: dict[str, list[LeadFacts]] = {}
    for lead in leads:
        if in_period(lead.mql_at, start, end):
            assert lead.mql_at is not None
            by_month.setdefault(month_key(lead.mql_at), []).append(lead)
    rows = []
    for key in sorted(by_month):
        members = by_month[key]
        first = _month_index(members[0].mql_at.astimezone(UTC))  # type: ignore[union-attr]
        ages = max(0, _month_index(now.astimezone(UTC)) - first)
        won_ages = Counter(
            _month_index(lead.won_at.astimezone(UTC)) - first for lead in members if lead.won_at
        )
        cumulative, running = [], 0
        for age in range(ages + 1):
            running += won_ages.get(age, 0)
            cumulative.append(ratio(running, len(members)))
        won = [lead for lead in members if lead.won_at]
        rows.append(
            {
                "cohort": key,
                "mqls": len(members),
                "sqls": sum(1 for lead in members if lead.sql_at),
                "customers": len(won),
                "revenue": float(sum((lead.amount or Decimal(0) for lead in won), Decimal(0))),
                "mql_to_customer": ratio(len(won), len(members)),
                "customers_by_month": cumulative,
            }
        )
    return rows
