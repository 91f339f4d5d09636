"""Attribution and bonus, embedded: touchpoints from lead.created and lead.activity, revenue
from deal.closed, the contract's model and bonus rate."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from leadpact.events import DealClosed, LeadAccepted, LeadActivity
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import SERVICE, make_mql


async def test_attribution_and_bonus_follow_the_contract(system_factory: SystemFactory) -> None:
    fb = await system_factory(only=[SERVICE])
    start = fb.clock.now()
    lead_id = await make_mql(fb, at=start, campaign="q4-demo")  # touch 1: creation (q4-demo)
    await fb.publish(
        LeadActivity(
            lead_id=lead_id,
            activity="webinar_attended",
            detail={"campaign": "webinar"},
            occurred_at=start + timedelta(days=1),
        )
    )
    await fb.publish(
        LeadAccepted(lead_id=lead_id, owner="ana", accepted_at=start + timedelta(days=2))
    )
    await fb.publish(
        LeadActivity(
            lead_id=lead_id,
            activity="pricing_page_view",
            detail={"utm_campaign": "retargeting"},
            occurred_at=start + timedelta(days=3),
        )
    )
    await fb.publish(
        DealClosed(
            lead_id=lead_id,
            won=True,
            amount=Decimal("10000"),
            closed_at=start + timedelta(days=4),
        )
    )

    async def won() -> bool:
        body = (await fb[SERVICE].get(f"/v1/leads/{lead_id}")).json()
        text = (await fb[SERVICE].get("/metrics")).text
        return (
            bool(body.get("won_at"))
            and bool(body.get("sql_at"))
            and ('leadpact_events_consumed_total{topic="lead.activity"} 2.0' in text)
        )

    await eventually(won)
    period = {"from": "2026-11-01", "to": "2026-12-01"}
    # Touches: q4-demo (first, lead creation: MQL at creation), webinar (opportunity: the
    # last touch before acceptance), retargeting (the last). W-shaped: 30/30 to q4-demo,
    # 30 to webinar, 10 to retargeting.
    answer = (await fb[SERVICE].get("/v1/attribution", params=period)).json()
    assert answer["model"] == "w_shaped"
    shares = {c["campaign"]: c["revenue"] for c in answer["campaigns"]}
    assert shares == {"q4-demo": 6000.0, "webinar": 3000.0, "retargeting": 1000.0}
    first = (
        await fb[SERVICE].get("/v1/attribution", params={**period, "model": "first_touch"})
    ).json()
    assert {c["campaign"]: c["revenue"] for c in first["campaigns"]} == {"q4-demo": 10000.0}
    bad = await fb[SERVICE].get("/v1/attribution", params={**period, "model": "z_shaped"})
    assert bad.status_code == 422 and "model" in bad.text

    bonus = (await fb[SERVICE].get("/v1/bonus", params=period)).json()
    assert bonus["bonus_rate"] == 0.02
    assert bonus["total_bonus"] == 200.0
    assert {r["campaign"]: r["bonus"] for r in bonus["rows"]} == {
        "q4-demo": 120.0,
        "webinar": 60.0,
        "retargeting": 20.0,
    }
