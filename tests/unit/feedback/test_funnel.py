"""Funnel arithmetic: target proration, groups, edge cases with nothing to divide by."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from feedback.domain.funnel import (
    LeadFacts,
    Spend,
    Targets,
    cohorts,
    group_of,
    kpis,
    prorated_target,
    stages,
)
from feedback.domain.spend import parse_csv

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
TARGETS = Targets(monthly_mql_target=300, marketing_share_target=0.3)


def test_target_is_prorated_by_calendar_month() -> None:
    assert prorated_target(300, NOV, DEC) == pytest.approx(300)
    assert prorated_target(300, NOV, NOV + timedelta(days=15)) == pytest.approx(150)
    # 15 days of November (of 30) and 31 of December (of 31)
    assert prorated_target(300, NOV + timedelta(days=15), DEC + timedelta(days=31)) == (
        pytest.approx(450)
    )


def test_empty_period_has_no_rates() -> None:
    report = kpis([], [], NOV, DEC, None, TARGETS)
    totals = report["totals"]
    assert totals["mqls"] == 0
    assert totals["mql_to_sql"] is None and totals["cac"] is None
    assert totals["sla_compliance"] is None and totals["marketing_revenue_share"] is None


def test_groups_and_revenue_share() -> None:
    at = NOV + timedelta(days=3)
    marketing = LeadFacts(
        "a",
        created_at=at,
        source="meta",
        owner="ana",
        mql_at=at,
        first_contact_at=at + timedelta(minutes=30),
        sql_at=at + timedelta(days=1),
        won_at=at + timedelta(days=5),
        amount=Decimal("300"),
    )
    late = LeadFacts(
        "b",
        source="google",
        mql_at=at,
        breaches=frozenset({"first_contact"}),
        rejected_at=at + timedelta(days=1),
        reject_reason="no_authority",
    )
    sales = LeadFacts("c", won_at=at + timedelta(days=2), amount=Decimal("700"))
    spend = [Spend(date(2026, 11, 2), "meta", "q4", Decimal("150"))]
    report = kpis([marketing, late, sales], spend, NOV, DEC, "source", TARGETS)
    totals = report["totals"]
    assert totals["mqls"] == 2 and totals["customers"] == 1
    assert totals["marketing_revenue_share"] == pytest.approx(0.3)
    assert totals["sla_compliance"] == pytest.approx(0.5)
    assert totals["rejection_reasons"] == {"no_authority": 1}
    assert totals["cac"] == pytest.approx(150)
    assert totals["lifecycle_days_median"] == pytest.approx(5)
    groups = {g["key"]: g for g in report["groups"]}
    assert set(groups) == {"meta", "google", "(none)"}
    assert groups["meta"]["spend"] == 150 and groups["google"]["spend"] == 0
    assert groups["(none)"]["mqls"] == 0  # the sales-sourced deal: revenue, no MQL
    assert group_of(marketing, "month") == "2026-11"
    owners = {g["key"]: g for g in kpis([marketing], spend, NOV, DEC, "owner", TARGETS)["groups"]}
    assert owners["ana"]["spend"] is None and owners["ana"]["cac"] is None


def test_stages_and_cohorts() -> None:
    at = NOV + timedelta(days=1)
    leads = [
        LeadFacts("a", created_at=at, mql_at=at, sql_at=at, won_at=DEC + timedelta(days=3)),
        LeadFacts("b", created_at=at, mql_at=at),
        LeadFacts("c", created_at=at),
    ]
    rows = stages(leads, NOV, DEC)
    assert [r["count"] for r in rows] == [3, 2, 1, 0]
    assert rows[2]["conversion_from_previous"] == pytest.approx(0.5)
    found = cohorts(leads, NOV, DEC, DEC + timedelta(days=40))
    assert found[0]["cohort"] == "2026-11"
    assert found[0]["customers_by_month"] == [0.0, 0.5, 0.5]


def test_csv_rows_are_validated() -> None:
    items, errors = parse_csv("day,amount,currency\n2026-11-02,10.5,\n\n2026-11-03,1,usd\n")
    assert [str(i.amount) for i in items] == ["10.5"]
    assert items[0].currency == "EUR"
    assert [(e.line, e.column) for e in errors] == [(4, "currency")]
