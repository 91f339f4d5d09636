"""Routing inside the sla-monitor, embedded with a contract that has a routing section:
rules pick the team, the weighted round-robin skips members out of hours, away or at
capacity, the deadline carries the owner, and a lead is assigned once."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from leadpact.events import LeadAccepted, LeadAssigned, LeadContacted, LeadCreated, LeadScored
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually

SERVICE = "sla-monitor"
ROUTING_CONTRACT = Path(__file__).parent / "contracts" / "routing.yaml"
VERSION = "test-routing.1"


@pytest.fixture
async def sla(system_factory: SystemFactory) -> EmbeddedSystem:
    return await system_factory(only=[SERVICE], contract=ROUTING_CONTRACT)


def scored(system: EmbeddedSystem, lead_id: str, probability: float | None = None) -> LeadScored:
    return LeadScored(
        lead_id=lead_id,
        points=70,
        probability=probability,
        tier="mql",
        source="website",
        scored_at=system.clock.now(),
    )


async def new_mql(
    system: EmbeddedSystem,
    *,
    country: str | None = None,
    size: int | None = None,
    probability: float | None = None,
) -> str:
    lead_id = str(uuid.uuid4())
    if country or size:
        await system.publish(
            LeadCreated(
                lead_id=lead_id,
                country=country,
                company_size=size,
                created_at=system.clock.now(),
            ),
            VERSION,
        )
    await system.publish(scored(system, lead_id, probability), VERSION)
    return lead_id


async def owner_of(system: EmbeddedSystem, lead_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        answer = await system[SERVICE].get(f"/v1/leads/{lead_id}/owner")
        if answer.status_code != 200 or not answer.json()["deadlines"]:
            return None
        found: dict[str, Any] = answer.json()
        return found

    found: dict[str, Any] = await eventually(probe)  # type: ignore[arg-type]
    return found


def assigned_events(system: EmbeddedSystem, lead_id: str) -> list[dict[str, Any]]:
    return [
        {**e.data.model_dump(mode="json"), "source": e.source}
        for e in system.events("lead.assigned")
        if e.subject == lead_id
    ]


async def test_rule_assigns_owner_and_deadline_carries_it(sla: EmbeddedSystem) -> None:
    lead_id = str(uuid.uuid4())
    await sla.publish(
        LeadCreated(lead_id=lead_id, country="es", company_size=800, created_at=sla.clock.now()),
        VERSION,
    )

    # lead.created is handled before lead.scored arrives (another topic): wait for it.
    async def created_handled() -> bool:
        text = (await sla[SERVICE].get("/metrics")).text
        return 'leadpact_events_consumed_total{topic="lead.created"} 1.0' in text

    await eventually(created_handled)
    await sla.publish(scored(sla, lead_id), VERSION)
    found = await owner_of(sla, lead_id)
    assert (found["owner"], found["team"], found["rule"]) == ("lucia", "enterprise", "big-iberia")
    assert {(d["clause"], d["owner"]) for d in found["deadlines"]} == {
        ("first_contact", "lucia"),
        ("attempts", "lucia"),
        ("outcome", "lucia"),
    }
    events = await eventually(lambda: assigned_events(sla, lead_id))
    assert len(events) == 1
    event = events[0]
    assert event["owner"] == "lucia"
    assert event["team"] == "enterprise"
    assert event["rule"] == "big-iberia"
    assert event["reason"] == "routing"
    assert event["contract_version"] == VERSION
    # The sla route keeps its shape (the e2e journeys read it).
    sla_view = (await sla[SERVICE].get(f"/v1/leads/{lead_id}/sla")).json()
    assert sla_view["clauses"][0]["clause"] == "first_contact"


async def test_weighted_turns_skip_the_member_out_of_hours(sla: EmbeddedSystem) -> None:
    owners, leads = [], []
    for _ in range(6):  # the "hot" rule: enterprise; nora (New York) is asleep at 09:00 UTC
        lead_id = await new_mql(sla, probability=0.95)
        leads.append(lead_id)
        owners.append((await owner_of(sla, lead_id))["owner"])
    assert sorted(owners) == ["jonas", "jonas", "lucia", "lucia", "lucia", "lucia"]
    load = (await sla[SERVICE].get("/v1/teams/enterprise/load")).json()
    by_member = {m["id"]: m for m in load["members"]}
    assert by_member["nora"]["assigned"] == 0
    assert by_member["nora"]["available"] is False
    assert by_member["lucia"]["expected_share"] == pytest.approx(0.5)
    assert by_member["lucia"]["actual_share"] == pytest.approx(4 / 6)
    member = (await sla[SERVICE].get("/v1/members/nora")).json()
    assert member["unavailable"] == "out_of_hours"
    # Five hours later it is 09:00 in New York: nora takes her share of the next turns,
    # re-entering at the team's pace (no burst to catch up on the morning she slept).
    # (Contacted first: a breach would escalate and take turns of its own.)
    for lead_id in leads:
        await sla.publish(
            LeadContacted(
                lead_id=lead_id,
                channel="phone",
                outcome="connected",
                contacted_at=sla.clock.now(),
            ),
            VERSION,
        )

    async def all_met() -> bool:
        for lead_id in leads:
            rows = (await owner_of(sla, lead_id))["deadlines"]
            if rows[0]["status"] != "met":
                return False
        return True

    await eventually(all_met)
    sla.clock.advance(5 * 3600)
    later = []
    for _ in range(4):
        later.append((await owner_of(sla, await new_mql(sla, probability=0.95)))["owner"])
    assert later == ["lucia", "lucia", "jonas", "nora"]


async def test_redelivered_and_repeated_scores_assign_once(sla: EmbeddedSystem) -> None:
    lead_id = str(uuid.uuid4())
    event = scored(sla, lead_id, 0.95)
    await sla.publish(event, VERSION)
    await sla.publish(event, VERSION)  # scored again (new event id): same lead
    first = await owner_of(sla, lead_id)
    # The very same event delivered twice (one event id): the inbox drops the second.
    from leadpact.events import envelope

    same = envelope(event, source="scoring", time=sla.clock.now(), contract_version=VERSION)
    await sla.bus.publish(same.topic, same.subject, same.to_json())
    await sla.bus.publish(same.topic, same.subject, same.to_json())
    marker = await new_mql(sla, probability=0.95)  # handled after the duplicates
    await owner_of(sla, marker)
    await eventually(lambda: assigned_events(sla, marker))
    assert len(assigned_events(sla, lead_id)) == 1
    again = await owner_of(sla, lead_id)
    assert again["owner"] == first["owner"]
    assert len(again["history"]) == 1


async def test_fallback_team_and_capacity(sla: EmbeddedSystem) -> None:
    # No rule matches: the fallback team smb, where ana holds at most 2 open leads.
    owners = [(await owner_of(sla, await new_mql(sla)))["owner"] for _ in range(5)]
    assert owners.count("ana") == 2
    assert owners.count("tom") == 3
    ana_leads = [
        lead
        for lead in [e.subject for e in sla.events("lead.assigned")]
        if assigned_events(sla, lead)[0]["owner"] == "ana"
    ]
    assert (await sla[SERVICE].get("/v1/members/ana")).json()["unavailable"] == "at_capacity"
    await sla.publish(LeadAccepted(lead_id=ana_leads[0], accepted_at=sla.clock.now()), VERSION)

    async def freed() -> bool:
        member = (await sla[SERVICE].get("/v1/members/ana")).json()
        return bool(member["open_leads"] == 1)

    await eventually(freed)
    nxt = await new_mql(sla)
    assert (await owner_of(sla, nxt))["owner"] == "ana"
    text = (await sla[SERVICE].get("/metrics")).text
    assert "# HELP leadpact_leads_assigned_total" in text
    assert 'leadpact_leads_assigned_total{member="ana",team="smb"} 3.0' in text
    assert "# HELP leadpact_owner_open_leads" in text
    assert 'leadpact_owner_open_leads{member="ana"} 2.0' in text


async def test_member_away_is_skipped_and_bad_updates_name_the_field(
    sla: EmbeddedSystem,
) -> None:
    now = sla.clock.now()
    away = await sla[SERVICE].put(
        "/v1/members/lucia",
        json={
            "away_from": (now.replace(hour=0)).isoformat(),
            "away_to": (now.replace(hour=23)).isoformat(),
            "by": "marta",
        },
    )
    assert away.status_code == 200, away.text
    assert away.json()["unavailable"] == "away"
    owners = [(await owner_of(sla, await new_mql(sla, probability=0.95)))["owner"]]
    owners.append((await owner_of(sla, await new_mql(sla, probability=0.95)))["owner"])
    assert owners == ["jonas", "jonas"]
    for body, field in [
        ({"capacity": 0}, "capacity"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"hours": {"from": "18:00", "to": "09:00"}}, "hours"),
        ({"away_from": "2026-11-03T10:00:00"}, "away_from"),
        ({"colour": "blue"}, "colour"),
        ({"away_from": now.isoformat(), "away_to": now.replace(hour=1).isoformat()}, "away_to"),
    ]:
        bad = await sla[SERVICE].put("/v1/members/jonas", json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert field in bad.text, (body, bad.text)
    missing = await sla[SERVICE].get("/v1/members/nobody")
    assert missing.status_code == 404 and "nobody" in missing.text
    team = await sla[SERVICE].put(
        "/v1/teams/smb", json={"members": [{"id": "ana", "capacity": 10}, {"id": "x"}]}
    )
    assert team.status_code == 422 and "members" in team.text and "'x'" in team.text
    ok = await sla[SERVICE].put(
        "/v1/teams/smb", json={"members": [{"id": "ana", "capacity": 10, "share": 3}]}
    )
    assert ok.status_code == 200, ok.text
    ana = next(m for m in ok.json()["members"] if m["id"] == "ana")
    assert (ana["capacity"], ana["share"]) == (10, 3)
    teams = (await sla[SERVICE].get("/v1/teams")).json()
    assert [t["id"] for t in teams["teams"]] == ["enterprise", "smb"]
    assert teams["fallback_team"] == "smb"


async def test_crm_owner_is_followed_and_the_difference_recorded(sla: EmbeddedSystem) -> None:
    lead_id = await new_mql(sla, probability=0.95)
    routed = (await owner_of(sla, lead_id))["owner"]
    crm = LeadAssigned(lead_id=lead_id, owner="tom", reason="crm", assigned_at=sla.clock.now())
    await sla.publish(crm, VERSION)

    async def followed() -> dict[str, Any] | None:
        found = await owner_of(sla, lead_id)
        return found if found["owner"] == "tom" else None

    found: dict[str, Any] = await eventually(followed)  # type: ignore[arg-type]
    assert found["routed_owner"] == routed
    assert found["reason"] == "crm"
    assert [h["reason"] for h in found["history"]] == ["routing", "crm"]
    assert {d["owner"] for d in found["deadlines"]} == {"tom"}
    # The CRM first: routing never runs for that lead.
    early = str(uuid.uuid4())
    await sla.publish(
        LeadAssigned(lead_id=early, owner="jonas", reason="crm", assigned_at=sla.clock.now()),
        VERSION,
    )

    async def crm_handled() -> bool:
        return (await sla[SERVICE].get(f"/v1/leads/{early}/owner")).status_code == 200

    await eventually(crm_handled)
    await sla.publish(scored(sla, early, 0.95), VERSION)
    first = await owner_of(sla, early)
    assert (first["owner"], first["reason"]) == ("jonas", "crm")
    assert [e["source"] for e in assigned_events(sla, early)] == ["test"]  # only the CRM's


async def test_reassign_by_api_is_an_event_with_who_and_why(sla: EmbeddedSystem) -> None:
    lead_id = await new_mql(sla, probability=0.95)
    before = (await owner_of(sla, lead_id))["owner"]
    answer = await sla[SERVICE].post(
        f"/v1/leads/{lead_id}/owner",
        json={"owner": "tom", "by": "marta", "why": "speaks Catalan"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["owner"] == "tom"
    assert body["history"][-1] == {
        "owner": "tom",
        "previous_owner": before,
        "team": "smb",
        "rule": None,
        "reason": "reassigned",
        "by": "marta",
        "why": "speaks Catalan",
        "at": "2026-11-02T09:00:00Z",
    }
    events = await eventually(lambda: len(assigned_events(sla, lead_id)) == 2)
    assert events
    last = assigned_events(sla, lead_id)[-1]
    assert (last["reason"], last["by"], last["previous_owner"]) == ("reassigned", "marta", before)
    assert last["note"] == "speaks Catalan"
    unknown = await sla[SERVICE].post(
        f"/v1/leads/{lead_id}/owner", json={"owner": "ghost", "by": "marta", "why": "x"}
    )
    assert unknown.status_code == 422 and "owner" in unknown.text
    no_lead = await sla[SERVICE].post(
        "/v1/leads/nope/owner", json={"owner": "tom", "by": "marta", "why": "x"}
    )
    assert no_lead.status_code == 404 and "nope" in no_lead.text
    no_why = await sla[SERVICE].post(
        f"/v1/leads/{lead_id}/owner", json={"owner": "tom", "by": "marta"}
    )
    assert no_why.status_code == 422 and "why" in no_why.text


async def test_returning_customer_goes_to_its_account_owner(sla: EmbeddedSystem) -> None:
    lead_id = str(uuid.uuid4())
    await sla.publish(
        LeadAssigned(
            lead_id=lead_id, owner="tom", reason="account_owner", assigned_at=sla.clock.now()
        ),
        VERSION,
    )

    async def handled() -> bool:
        return (await sla[SERVICE].get(f"/v1/leads/{lead_id}/owner")).status_code == 200

    await eventually(handled)
    await sla.publish(scored(sla, lead_id, 0.95), VERSION)  # the hot rule would say lucia
    found = await owner_of(sla, lead_id)
    assert (found["owner"], found["reason"], found["team"]) == ("tom", "account_owner", "smb")
    assert {d["owner"] for d in found["deadlines"]} == {"tom"}


async def test_a_settings_change_counts_from_the_very_next_assignment(
    sla: EmbeddedSystem,
) -> None:
    # Fallback team smb: ana (capacity 2) and tom take turns until ana is full.
    owners = [(await owner_of(sla, await new_mql(sla)))["owner"] for _ in range(5)]
    assert owners == ["ana", "tom", "ana", "tom", "tom"]
    raised = await sla[SERVICE].put("/v1/members/ana", json={"capacity": 3, "by": "pedro"})
    assert raised.status_code == 200, raised.text
    assert (await owner_of(sla, await new_mql(sla)))["owner"] == "ana"
    lowered = await sla[SERVICE].put("/v1/members/ana", json={"capacity": 2, "by": "pedro"})
    assert lowered.status_code == 200, lowered.text
    assert [(await owner_of(sla, await new_mql(sla)))["owner"] for _ in range(2)] == [
        "tom",
        "tom",
    ]
