"""The journeys every deployment must pass, written once and run embedded and distributed.

A deployment gives an HTTP client per service, a way to read the events of a topic, and a
way to let the first-contact deadline pass (moving the manual clock when embedded; the real
clock with a seconds-long deadline when distributed).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from leadpact.events import CloudEvent
from tests.fixtures.waiting import eventually


@dataclass
class Deployment:
    client: Callable[[str], httpx.AsyncClient]
    events: Callable[[str], Awaitable[list[CloudEvent[Any]]]]
    let_deadline_pass: Callable[[], Awaitable[None]]
    timeout: float = 10.0


def qualifying_lead() -> dict[str, Any]:
    """Scores 60 points under the test contracts (threshold 50): an MQL. A new person each
    time (intake folds a second lead of the same email or phone into the first)."""
    return {
        "email": f"ana.{uuid.uuid4().hex[:8]}@acme-robotics.example",
        "phone": f"+3461{random.randrange(10**7):07d}",
        "first_name": "Ana",
        "last_name": "García",
        "company": "Acme Robotics",
        "title": "Head of Operations",
        "company_size": 240,
        "source": {"platform": "website", "campaign": "q4-demo"},
    }


async def post_lead(d: Deployment, lead: dict[str, Any]) -> str:
    answer = await d.client("intake").post("/v1/leads", json=lead)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["lead_id"])


async def becomes_mql(d: Deployment, lead_id: str) -> dict[str, Any]:
    async def scored() -> dict[str, Any] | None:
        answer = await d.client("scoring").get(f"/v1/scores/{lead_id}")
        return answer.json() if answer.status_code == 200 else None

    score = await eventually(scored, d.timeout)
    assert score["tier"] == "mql", score
    return score


async def deadline_armed(d: Deployment, lead_id: str) -> dict[str, Any]:
    async def armed() -> dict[str, Any] | None:
        answer = await d.client("sla-monitor").get(f"/v1/leads/{lead_id}/sla")
        return answer.json() if answer.status_code == 200 else None

    return await eventually(armed, d.timeout)


async def breaches_of(d: Deployment, lead_id: str) -> list[CloudEvent[Any]]:
    return [e for e in await d.events("sla.breached") if e.subject == lead_id]


def breach_count(metrics_text: str, clause: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("leadpact_sla_breaches_total{") and f'clause="{clause}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def contacted(d: Deployment, lead_id: str) -> None:
    answer = await d.client("feedback").post(
        "/v1/activities",
        json={
            "type": "contacted",
            "lead_id": lead_id,
            "channel": "phone",
            "outcome": "connected",
            "owner": "maria@sales",
        },
    )
    assert answer.status_code == 202, answer.text


async def journey_mql_breach_and_response(d: Deployment) -> None:
    """A qualifying lead becomes an MQL; left alone it breaches once, counted once; a lead
    contacted in time never breaches; the customer record appears in crm-sync."""
    answered_lead = qualifying_lead()
    answered = await post_lead(d, answered_lead)
    ignored = await post_lead(d, qualifying_lead())
    await becomes_mql(d, answered)
    await becomes_mql(d, ignored)
    await deadline_armed(d, answered)
    await deadline_armed(d, ignored)
    metrics_before = (await d.client("sla-monitor").get("/metrics")).text

    await contacted(d, answered)

    async def answered_is_met() -> bool:
        sla = (await d.client("sla-monitor").get(f"/v1/leads/{answered}/sla")).text
        return bool(re.search(r'"status"\s*:\s*"met"', sla))

    await eventually(answered_is_met, d.timeout)
    await d.let_deadline_pass()

    breaches = await eventually(lambda: breaches_of(d, ignored), d.timeout)
    assert len(breaches) == 1
    assert breaches[0].data.clause == "first_contact"
    # The answered lead was armed first, so its deadline has passed too.
    assert await breaches_of(d, answered) == []

    metrics_after = (await d.client("sla-monitor").get("/metrics")).text
    assert (
        breach_count(metrics_after, "first_contact") - breach_count(metrics_before, "first_contact")
        == 1
    )

    lookup = await d.client("crm-sync").get(
        "/v1/customers/lookup", params={"email": answered_lead["email"]}
    )
    assert lookup.status_code == 200
    assert lookup.json()["customer"] is not None


async def journey_rejection_needs_a_reason(d: Deployment) -> None:
    lead_id = await post_lead(d, qualifying_lead())
    answer = await d.client("feedback").post(
        "/v1/activities", json={"type": "rejected", "lead_id": lead_id}
    )
    assert answer.status_code == 422
    assert "no_authority" in answer.text
    answer = await d.client("feedback").post(
        "/v1/activities", json={"type": "rejected", "lead_id": lead_id, "reason": "meh"}
    )
    assert answer.status_code == 422
    assert "out_of_budget" in answer.text
    rejected = [e for e in await d.events("lead.rejected") if e.subject == lead_id]
    assert rejected == []
