"""A returning customer goes to its account owner, end to end: intake asks crm-sync (a real
HTTP server standing in for it) whether the person is a customer, ``lead.created`` carries
the flag and the customer's earlier leads, and the sla-monitor hands the MQL to the owner
of those leads; when that owner cannot take it, the rules decide and the reason is kept."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.requests import Request

from leadpact.events import LeadAssigned
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.intake.stubs import http_stub
from tests.integration.sla_monitor.test_routing import (
    ROUTING_CONTRACT,
    SERVICE,
    VERSION,
    assigned_events,
    owner_of,
    scored,
)

CUSTOMERS: dict[str, list[str]] = {}  # email → the customer's earlier lead ids


def crm_sync(request: Request) -> tuple[int, Any]:
    """crm-sync's batch lookup: one answer per person asked, in order."""
    return 200, [lookup(person.get("email", "")) for person in request.state.json["people"]]


def lookup(email: str) -> dict[str, Any]:
    if email in CUSTOMERS:
        record = {"customer_id": f"cus_{email}", "lead_ids": CUSTOMERS[email]}
        return {"customer": record, "is_customer": True}
    return {"customer": None, "is_customer": False}


async def post_lead(system: EmbeddedSystem, email: str, **fields: Any) -> str:
    """A lead through intake; returns its id once the sla-monitor has its facts."""
    answer = await system["intake"].post("/v1/leads", json={"email": email, **fields})
    assert answer.status_code == 202, answer.text
    lead_id: str = answer.json()["lead_id"]
    await eventually(lambda: [e for e in created(system) if e.lead_id == lead_id])

    async def facts_stored() -> bool:
        text = (await system[SERVICE].get("/metrics")).text
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith('leadpact_events_consumed_total{topic="lead.created"}')
            ),
            "",
        )
        return bool(line) and float(line.split()[-1]) >= len(created(system))

    await eventually(facts_stored)
    return lead_id


def created(system: EmbeddedSystem) -> list[Any]:
    return [e.data for e in system.events("lead.created")]


async def mql(system: EmbeddedSystem, lead_id: str, probability: float) -> dict[str, Any]:
    await system.publish(scored(system, lead_id, probability), VERSION)
    return await owner_of(system, lead_id)


@pytest.fixture
async def system(system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    CUSTOMERS.clear()
    async with http_stub(crm_sync) as crm:
        monkeypatch.setenv("LEADPACT_INTAKE_CRM_SYNC_URL", crm.url)
        yield await system_factory(only=["intake", SERVICE], contract=ROUTING_CONTRACT)


async def test_returning_customer_goes_to_its_account_owner(system: EmbeddedSystem) -> None:
    # The customer's first lead: Iberian and large, so the rules give it to lucia.
    first = await post_lead(system, "ceo@bigco.example", country="ES", company_size=800)
    assert (await mql(system, first, 0.5))["owner"] == "lucia"
    # They became a customer; a colleague writes in. By the rules (no country, low
    # probability) the lead would go to the fallback team smb; it goes to lucia.
    CUSTOMERS["cfo@bigco.example"] = [first]
    again = await post_lead(system, "cfo@bigco.example")
    event = next(e for e in created(system) if e.lead_id == again)
    assert (event.existing_customer, event.customer_lead_ids) == (True, [first])
    found = await mql(system, again, 0.1)
    assert (found["owner"], found["team"], found["reason"], found["rule"]) == (
        "lucia",
        "enterprise",
        "account_owner",
        None,
    )
    assert {d["owner"] for d in found["deadlines"]} == {"lucia"}
    events = await eventually(lambda: assigned_events(system, again))
    assert [(e["owner"], e["reason"]) for e in events] == [("lucia", "account_owner")]
    load = (await system[SERVICE].get("/v1/members/lucia")).json()
    assert (load["assigned"], load["open_leads"]) == (2, 2)


async def test_account_owner_unavailable_falls_back_to_the_rules_with_the_reason(
    system: EmbeddedSystem,
) -> None:
    first = await post_lead(system, "ceo@acme.example", country="ES", company_size=800)
    assert (await mql(system, first, 0.5))["owner"] == "lucia"
    # lucia is away today: the rules decide, and the history says why.
    now = system.clock.now()
    away = await system[SERVICE].put(
        "/v1/members/lucia",
        json={"away_from": now.replace(hour=0).isoformat(), "by": "marta"},
    )
    assert away.status_code == 200, away.text
    CUSTOMERS["cfo@acme.example"] = [first]
    lead = await post_lead(system, "cfo@acme.example")
    found = await mql(system, lead, 0.1)
    assert (found["owner"], found["reason"], found["team"]) == ("ana", "routing", "smb")
    why = "returning customer: account owner lucia is away"
    assert found["history"][0]["why"] == why
    events = await eventually(lambda: assigned_events(system, lead))
    assert events[0]["note"] == why
    # An owner routing does not know (set in the CRM) is not a member: rules again.
    crm_lead = str(uuid.uuid4())
    await system.publish(
        LeadAssigned(lead_id=crm_lead, owner="ext@partner.example", reason="crm", assigned_at=now),
        VERSION,
    )

    async def crm_followed() -> bool:
        answer = await system[SERVICE].get(f"/v1/leads/{crm_lead}/owner")
        return answer.status_code == 200

    await eventually(crm_followed)
    CUSTOMERS["buyer@partner.example"] = [crm_lead]
    other = await post_lead(system, "buyer@partner.example")
    found = await mql(system, other, 0.1)
    assert (found["reason"], found["team"]) == ("routing", "smb")
    assert found["history"][0]["why"] == (
        "returning customer: account owner ext@partner.example is not a routing member"
    )
    # Not a customer at all: no reason recorded.
    plain = await post_lead(system, "someone@new.example")
    found = await mql(system, plain, 0.1)
    assert (found["reason"], found["history"][0]["why"]) == ("routing", None)
