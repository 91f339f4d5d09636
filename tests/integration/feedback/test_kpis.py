"""KPIs on a generated month of traffic equal an independent computation from the generated
data; the TOFU/MOFU/BOFU table, cohorts and spend (JSON and CSV) likewise."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import SERVICE
from tests.integration.feedback.traffic import events, generate, spend_rows

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
MONTHLY_TARGET = 400  # the test contract's volume.monthly_mql_target
SHARE_TARGET = 0.30


async def consumed(system: EmbeddedSystem) -> float:
    text = (await system[SERVICE].get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("leadpact_events_consumed_total{")
    )


@pytest.fixture
async def loaded(system_factory: SystemFactory) -> tuple[EmbeddedSystem, list[dict[str, Any]]]:
    system = await system_factory(only=[SERVICE])
    leads = generate(90)
    published = 0
    for lead in leads:
        for data in events(lead):
            await system.publish(data)
            published += 1
    rows = spend_rows()
    half = len(rows) // 2
    answer = await system[SERVICE].post("/v1/spend", json={"items": rows[:half]})
    assert answer.status_code == 202, answer.text
    csv = "day,source,campaign,amount,currency\n" + "".join(
        f"{r['day']},{r['source']},{r['campaign']},{r['amount']},{r['currency']}\n"
        for r in rows[half:]
    )
    answer = await system[SERVICE].post(
        "/v1/spend/import", content=csv, headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"rows": len(rows) - half}

    async def all_in() -> bool:
        return await consumed(system) >= published

    await eventually(all_in, timeout=60)
    system.clock.set(datetime(2026, 12, 20, tzinfo=UTC))
    return system, leads


# ---- the independent computation ------------------------------------------------------------


def inside(at: datetime | None) -> bool:
    return at is not None and NOV <= at < DEC


def key_of(lead: dict[str, Any], group_by: str | None) -> str:
    if group_by is None:
        return "all"
    if group_by == "month":
        return lead["mql_at"].strftime("%Y-%m") if lead["mql_at"] else "(none)"
    return lead[group_by] or "(none)"


def expected_block(
    leads: list[dict[str, Any]], spend: list[dict[str, Any]], group_by: str | None, key: str
) -> dict[str, Any]:
    cohort = [x for x in leads if inside(x["mql_at"]) and key_of(x, group_by) == key]
    won = [x for x in cohort if x["won_at"]]
    sqls = [x for x in cohort if x["sql_at"]]
    delays = [
        (x["first_contact_at"] - x["mql_at"]).total_seconds()
        for x in cohort
        if x["first_contact_at"]
    ]
    breached = [x for x in cohort if "first_contact" in x["breaches"]]
    met = [x for x in cohort if x["first_contact_at"] and "first_contact" not in x["breaches"]]
    closed_all = [x for x in leads if inside(x["won_at"])]
    revenue_all = sum(x["amount"] for x in closed_all)
    marketing = sum(x["amount"] for x in closed_all if x["mql_at"] and key_of(x, group_by) == key)
    if group_by == "owner":
        spent = None
    else:
        spent = Decimal(0)
        for row in spend:
            day = datetime.fromisoformat(row["day"]).replace(tzinfo=UTC)
            if not inside(day):
                continue
            row_key = {"source": row["source"], "campaign": row["campaign"]}.get(
                group_by or "", day.strftime("%Y-%m") if group_by == "month" else "all"
            )
            if row_key == key:
                spent += Decimal(row["amount"])
    lifecycle = [(x["won_at"] - x["created_at"]).total_seconds() / 86400 for x in won]
    return {
        "mqls": len(cohort),
        "sqls": len(sqls),
        "customers": len(won),
        "mql_to_sql": len(sqls) / len(cohort) if cohort else None,
        "sql_to_customer": len(won) / len(sqls) if sqls else None,
        "mql_to_customer": len(won) / len(cohort) if cohort else None,
        "median_first_contact": statistics.median(delays) if delays else None,
        "sla_compliance": len(met) / (len(met) + len(breached)) if met or breached else None,
        "rejection_reasons": dict(Counter(x["reason"] for x in cohort if x["reason"])),
        "breaches": dict(Counter(c for x in cohort for c in x["breaches"])),
        "spend": float(spent) if spent is not None else None,
        "cac": float(spent) / len(won) if spent is not None and won else None,
        "share": float(marketing) / float(revenue_all) if revenue_all else None,
        "lifecycle": statistics.median(lifecycle) if lifecycle else None,
        "won_revenue": float(sum(x["amount"] for x in won)),
    }


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)


def assert_block(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual["mqls"] == expected["mqls"]
    assert actual["sqls"] == expected["sqls"]
    assert actual["customers"] == expected["customers"]
    for ours, theirs in [
        ("mql_to_sql", "mql_to_sql"),
        ("sql_to_customer", "sql_to_customer"),
        ("mql_to_customer", "mql_to_customer"),
        ("sla_compliance", "sla_compliance"),
        ("cac", "cac"),
        ("spend", "spend"),
        ("marketing_revenue_share", "share"),
        ("lifecycle_days_median", "lifecycle"),
        ("won_revenue", "won_revenue"),
    ]:
        assert actual[ours] == approx(expected[theirs]), ours
    assert actual["time_to_first_contact_seconds"]["median"] == approx(
        expected["median_first_contact"]
    )
    assert actual["rejection_reasons"] == expected["rejection_reasons"]
    assert actual["sla_breaches"] == expected["breaches"]


async def test_kpis_funnel_and_cohorts_match_an_independent_computation(
    loaded: tuple[EmbeddedSystem, list[dict[str, Any]]],
) -> None:
    system, leads = loaded
    spend = spend_rows()
    period = {"from": "2026-11-01", "to": "2026-12-01"}
    totals = (await system[SERVICE].get("/v1/kpis", params=period)).json()
    expected = expected_block(leads, spend, None, "all")
    assert expected["mqls"] > 30 and expected["customers"] > 3  # the data is not trivial
    assert_block(totals["totals"], expected)
    assert totals["totals"]["mql_target"] == MONTHLY_TARGET
    assert totals["totals"]["mql_target_attainment"] == approx(expected["mqls"] / MONTHLY_TARGET)
    assert totals["totals"]["marketing_revenue_share_target"] == SHARE_TARGET

    for group_by in ("source", "campaign", "owner", "month"):
        answer = await system[SERVICE].get("/v1/kpis", params={**period, "group_by": group_by})
        assert answer.status_code == 200, answer.text
        groups = {g["key"]: g for g in answer.json()["groups"]}
        cohort_keys = {key_of(x, group_by) for x in leads if inside(x["mql_at"])}
        assert cohort_keys <= set(groups)
        for key, block in groups.items():
            assert_block(block, expected_block(leads, spend, group_by, key))
        assert sum(g["mqls"] for g in groups.values()) == expected["mqls"]
    # One load of generated traffic for both (loading it is the slow part).
    await check_tofu_mofu_bofu_and_cohorts(system, leads)


async def check_tofu_mofu_bofu_and_cohorts(
    system: EmbeddedSystem, leads: list[dict[str, Any]]
) -> None:
    answer = await system[SERVICE].get(
        "/v1/funnel", params={"from": "2026-11-01", "to": "2026-12-01"}
    )
    rows = answer.json()["stages"]
    expected = [
        sum(inside(x["created_at"]) for x in leads),
        sum(inside(x["mql_at"]) for x in leads),
        sum(inside(x["sql_at"]) for x in leads),
        sum(inside(x["won_at"]) for x in leads),
    ]
    assert [r["count"] for r in rows] == expected
    assert [r["stage"] for r in rows] == ["TOFU", "MOFU", "MOFU", "BOFU"]
    assert rows[1]["conversion_from_previous"] == approx(expected[1] / expected[0])

    answer = await system[SERVICE].get(
        "/v1/cohorts", params={"from": "2026-10-01", "to": "2026-12-01"}
    )
    found = {c["cohort"]: c for c in answer.json()["cohorts"]}
    assert set(found) == {"2026-10", "2026-11"}
    for month, row in found.items():
        members = [x for x in leads if x["mql_at"] and x["mql_at"].strftime("%Y-%m") == month]
        won = [x for x in members if x["won_at"]]
        assert row["mqls"] == len(members)
        assert row["customers"] == len(won)
        curve = row["customers_by_month"]
        assert len(curve) == (12 - int(month[5:])) + 1  # up to December (the clock)
        assert curve[-1] == approx(len(won) / len(members))
        start = int(month[5:])
        for age, share in enumerate(curve):
            by_then = [x for x in won if x["won_at"].month - start <= age]
            assert share == approx(len(by_then) / len(members))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"from": "2026-11-01"}, "to"),
        ({"from": "2026-11-01", "to": "2026-10-01"}, "to: must be after from"),
        ({"from": "yesterday", "to": "2026-12-01"}, "from"),
        ({"from": "2026-11-01", "to": "2026-12-01", "group_by": "colour"}, "group_by"),
    ],
)
async def test_bad_kpi_queries_name_the_field(
    system_factory: SystemFactory, params: dict[str, str], fragment: str
) -> None:
    system = await system_factory(only=[SERVICE])
    answer = await system[SERVICE].get("/v1/kpis", params=params)
    assert answer.status_code == 422
    assert fragment in answer.text


async def test_bad_spend_is_refused_by_line_and_column(system_factory: SystemFactory) -> None:
    system = await system_factory(only=[SERVICE])
    csv = "day,source,campaign,amount\n2026-11-02,meta,q4,12.50\n2026-11-31,meta,q4,abc\n"
    answer = await system[SERVICE].post(
        "/v1/spend/import", content=csv, headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 422
    text = answer.text
    assert "line 3, day" in text and "line 3, amount" in text
    header = await system[SERVICE].post(
        "/v1/spend/import", content="when,amount\n", headers={"content-type": "text/csv"}
    )
    assert header.status_code == 422 and "missing column 'day'" in header.text
    bad = await system[SERVICE].post(
        "/v1/spend", json={"items": [{"day": "2026-11-02", "amount": "-1"}]}
    )
    assert bad.status_code == 422 and "amount" in bad.text
    spend = await system[SERVICE].get(
        "/v1/spend", params={"from": "2026-11-01", "to": "2026-12-01"}
    )
    assert spend.json()["items"] == []  # nothing of a refused import was kept
