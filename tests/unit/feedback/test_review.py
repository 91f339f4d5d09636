"""The quarterly review's pure parts: quarters, clauses, score deciles, the threshold rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from feedback.domain.funnel import LeadFacts
from feedback.domain.review import Terms, clauses, deciles, parse_quarter, review, suggest_threshold
from feedback.domain.review_report import render_csv, render_html

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
TERMS = Terms(
    version="v1",
    first_contact_within=timedelta(minutes=60),
    attempts_within=timedelta(days=10),
    min_attempts=6,
    decide_within=timedelta(days=30),
    monthly_mql_target=2,
    marketing_share_target=0.3,
    threshold_points=50,
    compliance_target=0.5,
    conversion_floor=0.5,
)


def test_quarters() -> None:
    assert parse_quarter("2026-Q4") == (START, END)
    assert parse_quarter(" 2027-Q1 ") == (
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2027, 4, 1, tzinfo=UTC),
    )
    for bad in ("2026-Q0", "2026-Q5", "2026-4", "Q4"):
        with pytest.raises(ValueError, match="quarter"):
            parse_quarter(bad)


def lead(i: int, points: int | None, **facts: object) -> LeadFacts:
    return LeadFacts(lead_id=f"L{i}", points=points, **facts)  # type: ignore[arg-type]


def test_ties_never_straddle_two_bands() -> None:
    cohort = [lead(i, p) for i, p in enumerate([50, 50, 50, 50, 60, 60, 70, 80, 90, 90])]
    bands = deciles(cohort)
    assert [(b["decile"], b["from_points"], b["to_points"], b["mqls"]) for b in bands] == [
        (1, 50, 60, 4),
        (5, 60, 70, 2),
        (7, 70, 80, 1),
        (8, 80, 90, 1),
        (9, 90, None, 2),
    ]
    assert deciles([]) == []


def band(low: int, rate: float | None) -> dict[str, object]:
    return {"from_points": low, "mql_to_sql": rate, "mql_to_customer": rate}


def test_the_threshold_rule() -> None:
    bands = [band(50, 0.2), band(60, 0.6), band(70, 0.4), band(80, 0.7), band(90, 0.9)]
    # every band from 80 up stays at or above the floor; 70 dips below it
    assert suggest_threshold(bands, 50, 0.5, "mql_to_sql") == 80
    assert suggest_threshold(bands, 50, 0.4, "mql_to_sql") == 60
    # all bands convert: keep the current threshold (no evidence below it)
    assert suggest_threshold(bands, 50, 0.1, "mql_to_sql") == 50
    # even the top band is below the floor: no suggestion
    assert suggest_threshold(bands, 50, 0.95, "mql_to_sql") is None
    assert suggest_threshold([], 50, 0.1, "mql_to_sql") is None


def test_clauses_judge_what_can_be_judged() -> None:
    now = datetime(2026, 12, 30, tzinfo=UTC)
    mql = datetime(2026, 10, 5, tzinfo=UTC)
    late = datetime(2026, 12, 28, tzinfo=UTC)  # attempts window still open at ``now``
    leads = [
        lead(1, 60, mql_at=mql, first_contact_at=mql, sql_at=mql, won_at=mql, amount=Decimal(100)),
        lead(2, 70, mql_at=mql, breaches=frozenset({"first_contact", "outcome"})),
        lead(3, 80, mql_at=late, first_contact_at=late),
        lead(4, None, won_at=mql, amount=Decimal(300)),  # not marketing's
    ]
    judged = {c["clause"]: c for c in clauses(leads, START, END, now, TERMS)}
    assert (judged["first_contact"]["met_count"], judged["first_contact"]["judged"]) == (2, 3)
    assert judged["first_contact"]["met"] is True
    assert (judged["attempts"]["judged"], judged["attempts"]["pending"]) == (2, 1)
    assert (judged["outcome"]["met_count"], judged["outcome"]["judged"]) == (1, 2)
    assert judged["mql_volume"]["value"] == 3 and judged["mql_volume"]["target"] == 6
    assert [m["mqls"] for m in judged["mql_volume"]["months"]] == [2, 0, 1]
    assert judged["mql_volume"]["met"] is False
    assert judged["marketing_revenue_share"]["value"] == 0.25
    assert judged["marketing_revenue_share"]["met"] is False

    doc = review("2026-Q4", leads, START, END, now, TERMS)
    assert doc["all_met"] is False and doc["conversion"]["mqls"] == 3
    page = render_html(doc)
    assert 'data-clause="outcome" data-met="True"' in page and "2026-Q4" in page
    assert "clause,mql_volume,value,3" in render_csv(doc)


def test_nothing_to_judge_is_no_verdict() -> None:
    doc = review("2026-Q4", [], START, END, END, TERMS)
    verdicts = {c["clause"]: c["met"] for c in doc["clauses"]}
    assert verdicts["first_contact"] is None and verdicts["marketing_revenue_share"] is None
    assert doc["deciles"] == [] and doc["threshold"]["suggested"] is None
    assert "no data" in render_html(doc)
