"""privacy.erased in scoring: features and reasons lose every value that names the person;
scores keep their points, tiers and times, labels stay, and a late lead.created is ignored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from leadpact.events import (
    LeadAccepted,
    LeadActivity,
    LeadCreated,
    LeadSource,
    PrivacyErased,
)
from leadpact.messaging import MESSAGING
from scoring.store import Base
from tests.fixtures.erasure_scan import dump_database, mentions_of
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually

PERSONAL = ("ana.garcia", "612345678", "Zubizarreta", "Head of Operations", "WhatsApp", "Ana ")


def ana(lead_id: str, now: object) -> LeadCreated:
    return LeadCreated.model_validate(
        {
            "lead_id": lead_id,
            "email": "ana.garcia@acme.example",
            "phone": "+34612345678",
            "first_name": "Ana",
            "last_name": "Zubizarreta",
            "company": "Acme Robotics",
            "title": "Head of Operations",
            "company_size": 240,
            "industry": "robotics",
            "country": "ES",
            "source": LeadSource(platform="meta", campaign="q4"),
            "attributes": {"notes": "Ana prefers WhatsApp", "budget": 50000},
            "created_at": now,
        }
    )


async def test_an_erased_person_is_named_nowhere_in_scoring(
    system_factory: SystemFactory, tmp_path: Path
) -> None:
    system = await system_factory(only=["scoring"])
    client = system["scoring"]
    now = system.clock.now()
    await system.publish(ana("L1", now))
    await system.publish(LeadActivity(lead_id="L1", activity="pricing_page_view", occurred_at=now))
    await system.publish(LeadAccepted(lead_id="L1", accepted_at=now))
    other = ana("L2", now).model_copy(
        update={
            "email": "bea@other.example",
            "phone": "+34699999999",
            "first_name": "Bea",
            "last_name": "Ortiz",
            "title": "CTO",
            "attributes": {},
        }
    )
    await system.publish(other)

    async def history() -> list[dict[str, object]]:
        answer = await client.get("/v1/scores/L1")
        return answer.json()["history"] if answer.status_code == 200 else []

    await eventually(lambda: len(system.events("lead.scored")) >= 2)
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'scoring.db'}"

    async def settled() -> dict[str, list[str]]:
        dump = await dump_database(url, [Base.metadata, MESSAGING])
        done = len(dump["scores"]) == 3 and len(dump["labels"]) == 1
        return dump if done else {}

    before = await eventually(settled)
    assert mentions_of(before, PERSONAL)
    points_before = [(s["points"], s["tier"]) for s in await history()]

    await system.publish(
        PrivacyErased(
            subject_hash="0" * 64,
            lead_ids=["L1", "L9"],
            customer_id="C1",
            erased_at=system.clock.now(),
        )
    )

    async def handled(count: int) -> dict[str, list[str]]:
        dump = await dump_database(url, [Base.metadata, MESSAGING])
        return dump if len(dump["inbox"]) == count else {}

    await eventually(lambda: handled(5))
    # L9 was erased before scoring heard of it: its lead.created comes late and is ignored;
    # L1's next activity is kept but gives no new score (its rules would read blanks).
    system.clock.advance(timedelta(minutes=1))
    await system.publish(ana("L9", system.clock.now()))
    await system.publish(
        LeadActivity(lead_id="L9", activity="page_viewed", occurred_at=system.clock.now())
    )
    await system.publish(
        LeadActivity(lead_id="L1", activity="pricing_page_view", occurred_at=system.clock.now())
    )

    after = await eventually(lambda: handled(8))
    assert len(after["scoring_activities"]) == 3
    assert not system.bus.messages("privacy.erased.dlq")
    assert mentions_of(after, PERSONAL) == []
    # Numbers stay for the KPIs: the same scores, the label; no re-score from blanked fields.
    assert len(after["scores"]) == 3 and len(after["labels"]) == 1
    assert [(s["points"], s["tier"]) for s in await history()] == points_before
    reasons = [r for s in await history() for r in s["reasons"]]  # type: ignore[attr-defined]
    assert "+20 title: [erased]" in reasons and "+15 company_size: 240" in reasons
    assert "+10 email: [erased]" in reasons
    kept = [row for row in after["scoring_leads"] if row.startswith("L1 |")]
    assert "director" in kept[0] and "business" in kept[0] and "50000" in kept[0]
    assert not any(row.startswith("L9 |") and "{}" not in row for row in after["scoring_leads"])
    # Somebody else keeps everything.
    assert mentions_of(after, ["bea@other.example", "Ortiz"])
