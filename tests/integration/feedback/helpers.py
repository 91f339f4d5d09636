"""Small helpers shared by feedback's integration tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from leadpact.events import LeadCreated, LeadScored, LeadSource
from tests.fixtures.system import EmbeddedSystem
from tests.fixtures.waiting import eventually

SERVICE = "feedback"


def new_lead_id() -> str:
    return str(uuid.uuid4())


async def make_mql(
    system: EmbeddedSystem,
    lead_id: str | None = None,
    at: datetime | None = None,
    source: str = "website",
    campaign: str = "q4-demo",
) -> str:
    """Publish lead.created and lead.scored (mql) and wait until feedback has both."""
    lead_id = lead_id or new_lead_id()
    at = at or system.clock.now()
    await system.publish(
        LeadCreated(
            lead_id=lead_id,
            email=f"{lead_id[:8]}@acme.example",
            source=LeadSource(platform=source, campaign=campaign),
            created_at=at,
        )
    )
    await system.publish(LeadScored(lead_id=lead_id, points=60, tier="mql", scored_at=at))

    async def seen() -> bool:
        answer = await system[SERVICE].get(f"/v1/leads/{lead_id}")
        body = answer.json() if answer.status_code == 200 else {}
        return bool(body.get("mql_at")) and bool(body.get("created_at"))

    await eventually(seen)
    return lead_id


async def post(system: EmbeddedSystem, activity: dict[str, Any]) -> Any:
    return await system[SERVICE].post("/v1/activities", json=activity)


def events_of(system: EmbeddedSystem, topic: str, lead_id: str) -> list[Any]:
    return [e for e in system.events(topic) if e.subject == lead_id]


async def metrics_text(system: EmbeddedSystem) -> str:
    return (await system[SERVICE].get("/metrics")).text
