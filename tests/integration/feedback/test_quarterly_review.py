"""The quarterly contract review: the JSON's numbers against an independent computation
from the traffic the test generated; the page renders in headless Chromium and shows them;
the CSV says the same."""

from __future__ import annotations

import csv
import html
import io
import random
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from leadpact.events import (
    DealClosed,
    EventData,
    LeadAccepted,
    LeadContacted,
    LeadCreated,
    LeadRejected,
    LeadScored,
    LeadSource,
    SlaBreached,
)
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import SERVICE
from tests.integration.feedback.test_weekly_report import CHROMIUM, chromium, read_image, write

Q_START, Q_END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
NOW = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)
# The fast test contract: 10m first contact, attempts within 10d, decide within 30d,
# 400 MQLs a month, 30% marketing share, threshold 50. Review settings: defaults.
MONTHLY, SHARE_TARGET, THRESHOLD = 400, 0.30, 50
COMPLIANCE, FLOOR = 0.9, 0.15


@dataclass
class Lead:
    lead_id: str
    mql_at: datetime | None
    points: int | None
    contacted_at: datetime | None = None
    accepted_at: datetime | None = None
    rejected_at: datetime | None = None
    won_at: datetime | None = None
    amount: Decimal = Decimal(0)
    breaches: set[str] = field(default_factory=set)


def generate(seed: int = 7, count: int = 80) -> list[Lead]:
    """MQLs over the quarter (and a few just outside it), better converting with more
    points; some breaches; plus deals won from leads that were never MQLs."""
    rng = random.Random(seed)
    leads: list[Lead] = []
    for i in range(count):
        mql_at = Q_START + timedelta(days=rng.randint(-5, 95), hours=rng.randint(8, 17))
        lead = Lead(f"M{i:03d}", mql_at, rng.randrange(50, 100, 5))
        if rng.random() < 0.9:
            lead.contacted_at = mql_at + timedelta(minutes=rng.randint(1, 20))
            if lead.contacted_at - mql_at > timedelta(minutes=10):
                lead.breaches.add("first_contact")
        elif rng.random() < 0.5:
            lead.breaches.add("first_contact")
        if rng.random() < 0.1:
            lead.breaches.add("attempts")
        chance = ((lead.points or 0) - 45) / 60
        decided_at = mql_at + timedelta(days=rng.randint(1, 40))
        if decided_at < NOW:
            if rng.random() < chance:
                lead.accepted_at = decided_at
                if rng.random() < 0.5:
                    lead.won_at = decided_at + timedelta(days=rng.randint(1, 20))
                    lead.amount = Decimal(rng.randrange(1000, 9000, 500))
            elif rng.random() < 0.6:
                lead.rejected_at = decided_at
            if decided_at - mql_at > timedelta(days=30):
                lead.breaches.add("outcome")
        leads.append(lead)
    for i in range(6):  # deals that marketing did not source
        won_at = Q_START + timedelta(days=rng.randint(0, 90))
        leads.append(Lead(f"S{i:03d}", None, None, won_at=won_at, amount=Decimal(4000)))
    return [lead for lead in leads if lead.won_at is None or lead.won_at < NOW]


def events_of(lead: Lead) -> list[EventData]:
    born = lead.mql_at or (lead.won_at - timedelta(days=3))  # type: ignore[operator]
    out: list[EventData] = [
        LeadCreated(
            lead_id=lead.lead_id,
            source=LeadSource(platform="website", campaign="q4"),
            created_at=born,
        )
    ]
    if lead.mql_at and lead.points is not None:
        out.append(
            LeadScored(lead_id=lead.lead_id, points=lead.points, tier="mql", scored_at=lead.mql_at)
        )
    if lead.contacted_at:
        out.append(
            LeadContacted(
                lead_id=lead.lead_id,
                channel="phone",
                outcome="connected",
                contacted_at=lead.contacted_at,
            )
        )
    if lead.accepted_at:
        out.append(LeadAccepted(lead_id=lead.lead_id, accepted_at=lead.accepted_at))
    if lead.rejected_at:
        out.append(
            LeadRejected(
                lead_id=lead.lead_id, reason="competitor_chosen", rejected_at=lead.rejected_at
            )
        )
    if lead.won_at:
        out.append(
            DealClosed(lead_id=lead.lead_id, won=True, amount=lead.amount, closed_at=lead.won_at)
        )
    for clause in sorted(lead.breaches):
        at = (lead.mql_at or born) + timedelta(days=1)
        out.append(
            SlaBreached(
                lead_id=lead.lead_id,
                clause=clause,  # type: ignore[arg-type]
                deadline=at,
                late_seconds=60.0,
                detected_at=at,
            )
        )
    return out


async def load(system: EmbeddedSystem, leads: list[Lead]) -> None:
    published = 0
    for lead in leads:
        for data in events_of(lead):
            await system.publish(data)
            published += 1

    async def all_in() -> bool:
        text = (await system[SERVICE].get("/metrics")).text
        consumed = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("leadpact_events_consumed_total{")
        )
        return consumed >= published

    await eventually(all_in, timeout=60)


def expected_review(leads: list[Lead]) -> dict[str, Any]:
    """The review computed here from what the test generated, the plain way."""
    cohort = [x for x in leads if x.mql_at and Q_START <= x.mql_at < Q_END]
    decided = [x for x in cohort if x.accepted_at or x.rejected_at or x.won_at]

    def share(num: int, den: int) -> float | None:
        return num / den if den else None

    fc = [x for x in cohort if x.contacted_at or "first_contact" in x.breaches]
    fc_ok = [x for x in fc if "first_contact" not in x.breaches]
    att = [
        x
        for x in cohort
        if (x.mql_at and x.mql_at + timedelta(days=10) <= NOW)
        or x in decided
        or "attempts" in x.breaches
    ]
    att_ok = [x for x in att if "attempts" not in x.breaches]
    out = [x for x in cohort if x in decided or "outcome" in x.breaches]
    out_ok = [x for x in out if "outcome" not in x.breaches]
    won_q = [x for x in leads if x.won_at and Q_START <= x.won_at < Q_END]
    total = sum(x.amount for x in won_q)
    marketing = sum(x.amount for x in won_q if x.mql_at)
    months = {}
    for month in (10, 11, 12):
        months[f"2026-{month:02d}"] = sum(1 for x in cohort if x.mql_at and x.mql_at.month == month)

    # Deciles: boundaries at ranks floor(k*n/10), equal ones merged.
    points = sorted(x.points for x in cohort if x.points is not None)
    n = len(points)
    boundaries: list[int] = []
    for k in range(10):
        if points[k * n // 10] not in boundaries:
            boundaries.append(points[k * n // 10])
    bands = []
    for i, low in enumerate(boundaries):
        high = boundaries[i + 1] if i + 1 < len(boundaries) else 10**9
        members = [x for x in cohort if x.points is not None and low <= x.points < high]
        sqls = sum(1 for x in members if x.accepted_at)
        won = sum(1 for x in members if x.won_at)
        bands.append((low, len(members), sqls, won, share(sqls, len(members))))
    suggested = None
    for low, _, _, _, rate in reversed(bands):
        if rate is None or rate < FLOOR:
            break
        suggested = low
    if suggested == boundaries[0]:
        suggested = THRESHOLD
    return {
        "first_contact": (len(fc_ok), len(fc), share(len(fc_ok), len(fc))),
        "attempts": (len(att_ok), len(att), share(len(att_ok), len(att))),
        "outcome": (len(out_ok), len(out), share(len(out_ok), len(out))),
        "mqls": len(cohort),
        "months": months,
        "revenue": (float(marketing), float(total)),
        "bands": bands,
        "suggested": suggested,
        "conversion": (
            sum(1 for x in cohort if x.accepted_at),
            sum(1 for x in cohort if x.won_at),
        ),
    }


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)


async def test_the_quarterly_review_matches_an_independent_computation_and_renders(
    system_factory: SystemFactory, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), "chromium missing: run `make system-deps`"
    system = await system_factory(only=[SERVICE])
    leads = generate()
    await load(system, leads)
    system.clock.set(NOW)
    want = expected_review(leads)

    answer = await system[SERVICE].get("/v1/reviews/quarterly", params={"quarter": "2026-Q4"})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["contract_version"] == "test-fast.1"
    clauses = {c["clause"]: c for c in doc["clauses"]}
    for name in ("first_contact", "attempts", "outcome"):
        met, judged, value = want[name]
        got = clauses[name]
        assert (got["met_count"], got["judged"]) == (met, judged), name
        assert close(got["value"], value) and got["met"] == (value >= COMPLIANCE), name
    volume = clauses["mql_volume"]
    assert volume["value"] == want["mqls"] and volume["target"] == pytest.approx(3 * MONTHLY)
    assert volume["met"] is (want["mqls"] >= 3 * MONTHLY)
    assert {m["month"]: m["mqls"] for m in volume["months"]} == want["months"]
    assert all(m["target"] == pytest.approx(MONTHLY) for m in volume["months"])
    marketing, total = want["revenue"]
    revenue = clauses["marketing_revenue_share"]
    assert (revenue["marketing_revenue"], revenue["total_revenue"]) == (marketing, total)
    assert close(revenue["value"], marketing / total)
    assert revenue["met"] is (marketing / total >= SHARE_TARGET)
    assert doc["all_met"] is all(c["met"] is True for c in doc["clauses"])

    got_bands = [
        (b["from_points"], b["mqls"], b["sqls"], b["customers"], b["mql_to_sql"])
        for b in doc["deciles"]
    ]
    assert got_bands == want["bands"]
    assert sum(b["mqls"] for b in doc["deciles"]) == want["mqls"]
    assert doc["threshold"]["suggested"] == want["suggested"]
    assert doc["threshold"]["current"] == THRESHOLD and doc["threshold"]["floor"] == FLOOR
    sqls, customers = want["conversion"]
    assert (doc["conversion"]["sqls"], doc["conversion"]["customers"]) == (sqls, customers)
    assert close(doc["conversion"]["mql_to_customer"], customers / want["mqls"])

    # The page, in headless Chromium: not blank, the verdict colours and the chart on screen,
    # and the DOM shows the API's numbers.
    page = await system[SERVICE].get("/reports/quarterly", params={"quarter": "2026-Q4"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    file = write(tmp_path / "quarterly.html", page.text)
    profile, shot = tmp_path / "profile", tmp_path / "quarterly.png"
    await chromium(
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=1200,1400",
        "--hide-scrollbars",
        file.as_uri(),
    )
    image = read_image(shot)
    colours = image.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 20, "the screenshot is blank"
    assert max(colours)[0] / (image.size[0] * image.size[1]) < 0.97, "the screenshot is blank"
    pixels = {c for _, c in colours}
    assert (0x25, 0x63, 0xEB) in pixels  # MQL→SQL bars
    verdicts = {c["met"] for c in doc["clauses"]}
    if True in verdicts:
        assert (0x16, 0xA3, 0x4A) in pixels
    if False in verdicts:
        assert (0xDC, 0x26, 0x26) in pixels

    dom = (await chromium(f"--user-data-dir={profile}", "--dump-dom", file.as_uri())).decode()
    shown = {
        m[1]: (m[2], html.unescape(m[3]))
        for m in re.finditer(r'data-clause="(\w+)" data-met="(\w*)" data-value="([^"]*)"', dom)
    }
    for name, clause in clauses.items():
        assert shown[name] == (
            str(clause["met"]) if clause["met"] is not None else "",
            str(clause["value"]) if clause["value"] is not None else "",
        ), name
    rows = re.findall(
        r'data-decile="(\d+)" data-from="(\d+)" data-mqls="(\d+)" data-sqls="(\d+)"', dom
    )
    assert [(int(f), int(m), int(s)) for _, f, m, s in rows] == [b[:3] for b in want["bands"]]
    suggested = re.search(r'data-threshold="suggested">([^<]*)<', dom)
    assert suggested and suggested[1] == (str(want["suggested"]) if want["suggested"] else "–")
    assert 'id="decile-chart"' in dom and 'id="floor-line"' in dom

    csv_answer = await system[SERVICE].get(
        "/reports/quarterly", params={"quarter": "2026-Q4", "format": "csv"}
    )
    assert csv_answer.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(csv_answer.text)))
    cells = {(s, k, f): v for s, k, f, v in table[1:]}
    assert cells[("clause", "mql_volume", "value")] == str(want["mqls"])
    assert cells[("threshold", "suggested", "")] == str(want["suggested"] or "")
    assert (
        sum(int(v) for (s, _, f), v in cells.items() if s == "decile" and f == "mqls")
        == (want["mqls"])
    )


@pytest.mark.parametrize("quarter", ["2026-Q5", "2026Q4", "Q4", "1999-Q1"])
async def test_a_bad_quarter_names_the_field(system_factory: SystemFactory, quarter: str) -> None:
    system = await system_factory(only=[SERVICE])
    for path in ("/v1/reviews/quarterly", "/reports/quarterly"):
        answer = await system[SERVICE].get(path, params={"quarter": quarter})
        assert answer.status_code == 422 and "quarter" in answer.text
