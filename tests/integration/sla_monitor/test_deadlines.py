"""The sla-monitor alone, embedded: lead.scored arms, lead.contacted meets, the watch
breaches once when the manual clock passes the deadline."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from leadpact.events import LeadContacted, LeadScored
from sla_monitor.watch import DeadlineWatch
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually

SERVICE = "sla-monitor"


@pytest.fixture
async def sla(system_factory: SystemFactory) -> EmbeddedSystem:
    return await system_factory(only=[SERVICE])


def mql(system: EmbeddedSystem, tier: str = "mql") -> LeadScored:
    return LeadScored.model_validate(
        {
            "lead_id": str(uuid.uuid4()),
            "points": 60,
            "tier": tier,
            "source": "meta",
            "scored_at": system.clock.now(),
        }
    )


async def clauses(system: EmbeddedSystem, lead_id: str) -> list[dict[str, Any]] | None:
    answer = await system[SERVICE].get(f"/v1/leads/{lead_id}/sla")
    if answer.status_code != 200:
        return None
    found: list[dict[str, Any]] = answer.json()["clauses"]
    return found


async def armed(system: EmbeddedSystem, lead_id: str) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        return await clauses(system, lead_id)

    found: list[dict[str, Any]] = await eventually(probe)  # type: ignore[arg-type]
    return found


def breaches(system: EmbeddedSystem, lead_id: str) -> list[dict[str, Any]]:
    return [
        e.data.model_dump(mode="json")
        for e in system.events("sla.breached")
        if e.data.lead_id == lead_id
    ]


async def metrics_text(system: EmbeddedSystem) -> str:
    return (await system[SERVICE].get("/metrics")).text


def watch(system: EmbeddedSystem) -> DeadlineWatch:
    found: DeadlineWatch = system.apps[SERVICE].state.ctx.extras["deadline_watch"]
    return found


async def test_mql_arms_first_contact_deadline_from_its_contract(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    found = await armed(sla, lead.lead_id)
    assert found == [
        {
            "clause": "first_contact",
            "due_at": "2026-11-02T09:10:00Z",
            "status": "open",
            "resolved_at": None,
        },
        {
            "clause": "attempts",
            "due_at": "2026-11-12T09:00:00Z",
            "status": "open",
            "resolved_at": None,
        },
        {
            "clause": "outcome",
            "due_at": "2026-12-02T09:00:00Z",
            "status": "open",
            "resolved_at": None,
        },
    ]


async def test_other_tiers_arm_nothing_and_unknown_lead_is_404(sla: EmbeddedSystem) -> None:
    lead = mql(sla, tier="nurture")
    await sla.publish(lead)
    await eventually(lambda: "lead.scored" in _consumed(sla))
    answer = await sla[SERVICE].get(f"/v1/leads/{lead.lead_id}/sla")
    assert answer.status_code == 404
    assert lead.lead_id in answer.json()["detail"]


def _consumed(system: EmbeddedSystem) -> str:
    registry = system.apps[SERVICE].state.ctx.metrics.registry
    value = registry.get_sample_value("leadpact_events_consumed_total", {"topic": "lead.scored"})
    return "lead.scored" if value else ""


async def test_contact_in_time_meets_the_clause(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await armed(sla, lead.lead_id)
    sla.clock.advance(timedelta(minutes=4))
    await sla.publish(
        LeadContacted(
            lead_id=lead.lead_id,
            channel="phone",
            outcome="connected",
            owner="rep-7",
            contacted_at=sla.clock.now(),
        )
    )

    async def met() -> bool:
        found = await clauses(sla, lead.lead_id)
        return bool(found and found[0]["status"] == "met")

    await eventually(met)  # type: ignore[arg-type]
    found = await clauses(sla, lead.lead_id)
    assert found and found[0]["resolved_at"] == "2026-11-02T09:04:00Z"
    sla.clock.advance(timedelta(minutes=30))
    text = await metrics_text(sla)
    assert 'leadpact_lead_first_response_seconds_bucket{le="300.0"} 1.0' in text
    assert breaches(sla, lead.lead_id) == []


async def test_missed_deadline_breaches_once_and_counts(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await sla.publish(lead)  # a duplicate lead.scored (new event id) arms nothing new
    await armed(sla, lead.lead_id)
    sla.clock.advance(timedelta(minutes=10, seconds=5))
    found = await eventually(lambda: breaches(sla, lead.lead_id))
    assert found[0]["clause"] == "first_contact"
    assert found[0]["source"] == "meta"
    assert found[0]["deadline"] == "2026-11-02T09:10:00Z"
    assert found[0]["late_seconds"] == 5.0
    sla.clock.advance(timedelta(minutes=10))
    text = await metrics_text(sla)
    assert (
        'leadpact_sla_breaches_total{clause="first_contact",source="meta",team="sales"} 1.0' in text
    )
    assert "leadpact_sla_detection_lag_seconds_count 1.0" in text
    assert 'leadpact_sla_deadlines_armed_total{clause="first_contact"} 1.0' in text
    assert len(breaches(sla, lead.lead_id)) == 1
    state = await clauses(sla, lead.lead_id)
    assert state and [c["status"] for c in state] == ["breached", "open", "open"]


async def test_breach_is_emitted_once_across_a_watch_restart(sla: EmbeddedSystem) -> None:
    lead = mql(sla)
    await sla.publish(lead)
    await armed(sla, lead.lead_id)
    old = watch(sla)
    await old.stop()
    sla.clock.advance(timedelta(minutes=11))  # due while no watch runs
    ctx = sla.apps[SERVICE].state.ctx
    first = DeadlineWatch(ctx.uow, sla.clock, ctx.extras["sla_metrics"])
    await first.start()  # rebuilt from the store: finds the overdue deadline
    await eventually(lambda: breaches(sla, lead.lead_id))
    await first.stop()
    second = DeadlineWatch(ctx.uow, sla.clock, ctx.extras["sla_metrics"])
    await second.start()
    sla.clock.advance(timedelta(minutes=1))
    assert await second.breach_due(sla.clock.now()) == 0
    await second.stop()
    await old.start()  # the app's own watch, so shutdown stops what it started
    assert len(breaches(sla, lead.lead_id)) == 1


def watch_cycles(system: EmbeddedSystem) -> float:
    registry = system.apps[SERVICE].state.ctx.metrics.registry
    return registry.get_sample_value("leadpact_sla_watch_cycles_total") or 0.0


async def test_arming_deadlines_after_the_watch_s_next_wake_costs_no_scan(
    sla: EmbeddedSystem,
) -> None:
    asleep_until = await eventually(lambda: watch(sla).sleeps_until)
    before = watch_cycles(sla)
    leads = [mql(sla) for _ in range(3)]
    for lead in leads:  # each due in 10 minutes, after the watch's one-minute horizon
        await sla.publish(lead)
        await armed(sla, lead.lead_id)
    sla.clock.set(asleep_until)
    # Only the wake the watch had planned: arming later deadlines did not wake it.
    await eventually(lambda: watch_cycles(sla) == before + 1)
    await eventually(lambda: watch(sla).sleeps_until)
    assert watch_cycles(sla) == before + 1
