"""Phase-B clauses, embedded: at-risk warnings, the outcome clause, the attempts clause
judged on a no_response rejection, and the breach log."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadpact.events import LeadAccepted, LeadContacted, LeadRejected
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.sla_monitor.test_deadlines import (
    SERVICE,
    armed,
    breaches,
    clauses,
    metrics_text,
    mql,
)


@pytest.fixture
async def sla(system_factory: SystemFactory) -> EmbeddedSystem:
    return await system_factory(only=[SERVICE])


async def status_of(system: EmbeddedSystem, lead_id: str, clause: str) -> str | None:
    found = await clauses(system, lead_id) or []
    return next((c["status"] for c in found if c["clause"] == clause), None)


async def becomes(system: EmbeddedSystem, lead_id: str, clause: str, status: str) -> None:
    async def probe() -> bool:
        return await status_of(system, lead_id, clause) == status

    await eventually(probe)  # type: ignore[arg-type]


def contact(system: EmbeddedSystem, lead_id: str, channel: str) -> LeadContacted:
    return LeadContacted.model_validate(
        {
            "lead_id": lead_id,
            "channel": channel,
            "outcome": "no_answer",
            "owner": "rep-7",
            "contacted_at": system.clock.now(),
        }
    )


async def test_at_risk_is_warned_once_at_its_share_of_the_time(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await armed(sla, lead.lead_id)
    sla.clock.advance(timedelta(minutes=8))  # 80 % of 10 minutes

    def warnings() -> list[object]:
        return [e for e in sla.events("sla.at_risk") if e.data.lead_id == lead.lead_id]

    found = await eventually(warnings)
    assert found[0].data.clause == "first_contact"  # type: ignore[attr-defined]
    assert found[0].data.remaining_seconds == 120.0  # type: ignore[attr-defined]
    sla.clock.advance(timedelta(seconds=30))
    text = await metrics_text(sla)
    assert 'leadpact_sla_at_risk_total{clause="first_contact"} 1.0' in text
    assert len(warnings()) == 1


async def test_acceptance_in_time_meets_outcome(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await armed(sla, lead.lead_id)
    sla.clock.advance(timedelta(days=2))
    await sla.publish(
        LeadAccepted(lead_id=lead.lead_id, owner="rep-7", accepted_at=sla.clock.now())
    )
    await becomes(sla, lead.lead_id, "outcome", "met")
    assert await status_of(sla, lead.lead_id, "attempts") == "met"


async def test_no_response_rejection_with_too_few_attempts_breaches_attempts(
    sla: EmbeddedSystem,
) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await armed(sla, lead.lead_id)
    await sla.publish(contact(sla, lead.lead_id, "phone"))
    await becomes(sla, lead.lead_id, "first_contact", "met")
    sla.clock.advance(timedelta(days=1))
    await sla.publish(
        LeadRejected(lead_id=lead.lead_id, reason="no_response", rejected_at=sla.clock.now())
    )
    await becomes(sla, lead.lead_id, "attempts", "breached")
    assert await status_of(sla, lead.lead_id, "outcome") == "met"
    # The relay publishes the breach after the commit the status shows: wait for it.
    await eventually(lambda: breaches(sla, lead.lead_id))
    found = breaches(sla, lead.lead_id)
    assert [b["clause"] for b in found] == ["attempts"]
    log = (await sla[SERVICE].get("/v1/breaches", params={"clause": "attempts"})).json()
    assert [b["lead_id"] for b in log["breaches"]] == [lead.lead_id]
    assert log["breaches"][0]["team"] == "sales"
    none = await sla[SERVICE].get("/v1/breaches", params={"team": "marketing"})
    assert none.json() == {"breaches": []}


async def test_enough_attempts_meet_the_attempts_clause(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await armed(sla, lead.lead_id)
    for i in range(6):  # the fast contract: 6 attempts over 2 channels within 10 days
        sla.clock.advance(timedelta(hours=1))
        await sla.publish(contact(sla, lead.lead_id, "phone" if i % 2 else "email"))
    await becomes(sla, lead.lead_id, "attempts", "met")
    await sla.publish(
        LeadRejected(lead_id=lead.lead_id, reason="no_response", rejected_at=sla.clock.now())
    )
    await becomes(sla, lead.lead_id, "outcome", "met")
    # The first attempt came an hour late (a first-contact breach), but no attempts breach.
    # (The relay publishes after the watch's commit: wait for it rather than race it.)
    await eventually(lambda: breaches(sla, lead.lead_id))
    assert [b["clause"] for b in breaches(sla, lead.lead_id)] == ["first_contact"]


async def test_breach_log_rejects_bad_filters(sla: EmbeddedSystem) -> None:
    bad_clause = await sla[SERVICE].get("/v1/breaches", params={"clause": "speed"})
    assert bad_clause.status_code == 422
    assert "clause" in bad_clause.text
    naive = await sla[SERVICE].get("/v1/breaches", params={"since": "2026-11-02T09:00:00"})
    assert naive.status_code == 422
    assert "since" in naive.text


async def test_contact_overtaking_the_score_still_meets_first_contact(
    sla: EmbeddedSystem,
) -> None:
    lead = mql(sla)
    sla.clock.advance(timedelta(minutes=2))
    await sla.publish(contact(sla, lead.lead_id, "phone"))  # arrives before lead.scored

    def consumed() -> float | None:
        registry = sla.apps[SERVICE].state.ctx.metrics.registry
        return registry.get_sample_value(
            "leadpact_events_consumed_total", {"topic": "lead.contacted"}
        )

    await eventually(consumed)
    await sla.publish(lead)
    await becomes(sla, lead.lead_id, "first_contact", "met")
    sla.clock.advance(timedelta(minutes=20))
    assert "leadpact_lead_first_response_seconds_count 1.0" in await metrics_text(sla)
    assert breaches(sla, lead.lead_id) == []


async def test_compliance_summary_counts_met_and_breached(sla: EmbeddedSystem) -> None:
    start = sla.clock.now().isoformat()
    answered, ignored = mql(sla), mql(sla)
    for lead in (answered, ignored):
        await sla.publish(lead)
        await armed(sla, lead.lead_id)
    await sla.publish(contact(sla, answered.lead_id, "phone"))
    await becomes(sla, answered.lead_id, "first_contact", "met")
    sla.clock.advance(timedelta(minutes=11))
    await becomes(sla, ignored.lead_id, "first_contact", "breached")
    answer = await sla[SERVICE].get("/v1/compliance", params={"since": start, "team": "sales"})
    first = next(c for c in answer.json()["clauses"] if c["clause"] == "first_contact")
    assert first == {
        "clause": "first_contact",
        "team": "sales",
        "armed": 2,
        "met": 1,
        "breached": 1,
        "open": 0,
        "compliance": 0.5,
    }
    backwards = await sla[SERVICE].get(
        "/v1/compliance", params={"since": sla.clock.now().isoformat(), "until": start}
    )
    assert backwards.status_code == 422
    assert "until" in backwards.text
