"""Scoring alone, embedded: lead.created and lead.activity in, lead.scored and the API out."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import pytest

from leadpact.events import LeadActivity, LeadCreated, LeadSource
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually

T = TypeVar("T")


async def settled(probe: Callable[[], Awaitable[T | None]]) -> T:
    """``eventually`` for an async probe (its signature confuses mypy for coroutines)."""
    result: T = await eventually(probe)  # type: ignore[arg-type]
    return result


@pytest.fixture
async def scoring(system_factory: SystemFactory) -> EmbeddedSystem:
    return await system_factory(only=["scoring"])


def new_lead(system: EmbeddedSystem, **fields: object) -> LeadCreated:
    base: dict[str, object] = {
        "lead_id": str(uuid.uuid4()),
        "email": "ana@acme.example",
        "company": "Acme",
        "title": "Head of Operations",
        "company_size": 10,
        "source": LeadSource(platform="meta"),
        "created_at": system.clock.now(),
    }
    return LeadCreated.model_validate({**base, **fields})


def scored(system: EmbeddedSystem, lead_id: str) -> list[dict[str, object]]:
    return [
        {**e.data.model_dump(mode="json"), "contractversion": e.contractversion}
        for e in system.events("lead.scored")
        if e.data.lead_id == lead_id
    ]


async def test_lead_is_scored_announced_and_readable(scoring: EmbeddedSystem) -> None:
    lead = new_lead(scoring, phone="+34600000000", company_size=80)
    await scoring.publish(lead)
    events = await eventually(lambda: scored(scoring, lead.lead_id))
    assert events[0]["tier"] == "mql"
    assert events[0]["points"] == 60
    assert events[0]["source"] == "meta"
    assert events[0]["contractversion"] == "test-fast.1"
    assert "+20 title: Head of Operations" in events[0]["reasons"]  # type: ignore[operator]

    answer = await scoring["scoring"].get(f"/v1/scores/{lead.lead_id}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["tier"] == "mql" and body["points"] == 60 and len(body["history"]) == 1

    metrics = (await scoring["scoring"].get("/metrics")).text
    assert 'leadpact_leads_scored_total{tier="mql"} 1.0' in metrics


async def test_free_mail_is_disqualified(scoring: EmbeddedSystem) -> None:
    lead = new_lead(scoring, email="ana@gmail.com")
    await scoring.publish(lead)
    events = await eventually(lambda: scored(scoring, lead.lead_id))
    assert events[0]["tier"] == "disqualified"


async def test_activity_rescores_and_announces_only_tier_changes(scoring: EmbeddedSystem) -> None:
    lead = new_lead(scoring)  # 20 + 10 + 5 = 35: nurture
    await scoring.publish(lead)
    await eventually(lambda: scored(scoring, lead.lead_id))
    for _ in range(2):
        scoring.clock.advance(timedelta(minutes=1))
        view = LeadActivity(
            lead_id=lead.lead_id,
            activity="pricing_page_view",
            occurred_at=scoring.clock.now(),
        )
        await scoring.publish(view)
        await scoring.publish(view)  # the same view twice (another event id) counts once
    history = await settled(lambda: _history_of(scoring, lead.lead_id, length=3))
    assert [h["points"] for h in history] == [55, 45, 35]
    # The relay publishes after the commit the history shows: wait for the third event.
    await eventually(lambda: len(scored(scoring, lead.lead_id)) >= 3)
    events = scored(scoring, lead.lead_id)
    # 35 nurture -> 45 nurture (move of 10 is announced) -> 55 mql (tier change)
    assert [e["tier"] for e in events] == ["nurture", "nurture", "mql"]


async def test_rescore_below_min_move_is_stored_but_not_announced(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADPACT_SCORING_RESCORE_MIN_POINTS", "50")
    system = await system_factory(only=["scoring"])
    lead = new_lead(system)
    await system.publish(lead)
    await eventually(lambda: scored(system, lead.lead_id))
    await system.publish(
        LeadActivity(
            lead_id=lead.lead_id, activity="pricing_page_view", occurred_at=system.clock.now()
        )
    )
    history = await settled(lambda: _history_of(system, lead.lead_id, length=2))
    assert history[0]["announced"] is False
    assert len(scored(system, lead.lead_id)) == 1


async def test_unknown_lead_is_404_naming_lead_id(scoring: EmbeddedSystem) -> None:
    answer = await scoring["scoring"].get("/v1/scores/nope")
    assert answer.status_code == 404
    assert "lead_id" in answer.json()["detail"]


async def _history_of(
    system: EmbeddedSystem, lead_id: str, length: int
) -> list[dict[str, object]] | None:
    answer = await system["scoring"].get(f"/v1/scores/{lead_id}")
    if answer.status_code != 200:
        return None
    history: list[dict[str, object]] = answer.json()["history"]
    return history if len(history) >= length else None
