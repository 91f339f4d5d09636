"""POST /v1/activities, embedded: events through the outbox, the contract's reasons
enforced, no_response refused until the attempts clause is met, recycles on time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadpact.events import LeadContacted, envelope
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import (
    SERVICE,
    events_of,
    make_mql,
    metrics_text,
    new_lead_id,
    post,
)


@pytest.fixture
async def fb(system_factory: SystemFactory) -> EmbeddedSystem:
    return await system_factory(only=[SERVICE])


async def test_contacted_is_emitted_and_answered_202(fb: EmbeddedSystem) -> None:
    lead_id = new_lead_id()
    answer = await post(
        fb,
        {
            "type": "contacted",
            "lead_id": lead_id,
            "channel": "phone",
            "outcome": "connected",
            "owner": "maria@sales",
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["type"] == "lead.contacted"
    found = await eventually(lambda: events_of(fb, "lead.contacted", lead_id))
    assert found[0].data.owner == "maria@sales"
    assert found[0].data.contacted_at == fb.clock.now()
    assert found[0].contractversion == "test-fast.1"
    assert found[0].id == answer.json()["event_id"]


async def test_every_type_becomes_its_event(fb: EmbeddedSystem) -> None:
    lead_id = await make_mql(fb)
    for activity, topic in [
        ({"type": "accepted"}, "lead.accepted"),
        ({"type": "won", "amount": "12000.50", "currency": "EUR"}, "deal.closed"),
        ({"type": "lost"}, "deal.closed"),
    ]:
        answer = await post(fb, {**activity, "lead_id": lead_id, "owner": "rep-1"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["type"] == topic
    deals = await eventually(lambda: len(events_of(fb, "deal.closed", lead_id)) == 2)
    assert deals
    closed = events_of(fb, "deal.closed", lead_id)
    assert [e.data.won for e in closed] == [True, False]
    assert str(closed[0].data.amount) == "12000.50"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "waved", "lead_id": "x"}, "type"),
        (
            {"type": "contacted", "lead_id": "x", "channel": "fax", "outcome": "connected"},
            "channel",
        ),
        ({"type": "contacted", "channel": "phone", "outcome": "connected"}, "lead_id"),
        ({"type": "accepted", "lead_id": "x", "at": "2026-11-02T09:00:00"}, "at"),
        ({"type": "won", "lead_id": "x", "amount": "-3"}, "amount"),
        ({"type": "won", "lead_id": "x", "amount": "3", "currency": "euro"}, "currency"),
        ({"type": "accepted", "lead_id": "x", "at": "2030-01-01T00:00:00Z"}, "at"),
    ],
)
async def test_bad_fields_get_422_naming_the_field(
    fb: EmbeddedSystem, body: dict[str, object], field: str
) -> None:
    answer = await post(fb, body)
    assert answer.status_code == 422, answer.text
    assert field in str([e["loc"] for e in answer.json()["detail"]]) or field in answer.text


async def test_rejection_needs_a_contract_reason(fb: EmbeddedSystem) -> None:
    lead_id = await make_mql(fb)
    missing = await post(fb, {"type": "rejected", "lead_id": lead_id})
    assert missing.status_code == 422
    body = missing.json()
    assert body["detail"][0]["loc"] == ["body", "reason"]
    assert "no_authority" in missing.text
    labels = {r["code"]: r["label"] for r in body["valid_reasons"]}
    assert labels["no_authority"] == {"en": "No decision power", "es": "Sin poder de decisión"}

    bad = await post(fb, {"type": "rejected", "lead_id": lead_id, "reason": "meh"})
    assert bad.status_code == 422 and "out_of_budget" in bad.text and "'meh'" in bad.text

    other = await post(fb, {"type": "rejected", "lead_id": lead_id, "reason": "other"})
    assert other.status_code == 422 and other.json()["field"] == "note"

    good = await post(
        fb, {"type": "rejected", "lead_id": lead_id, "reason": "other", "note": "merged"}
    )
    assert good.status_code == 202
    rejected = await eventually(lambda: events_of(fb, "lead.rejected", lead_id))
    assert len(rejected) == 1 and rejected[0].data.note == "merged"
    text = await metrics_text(fb)
    assert "# HELP leadpact_rejections_total" in text
    assert 'leadpact_rejections_total{reason="other"} 1.0' in text
    assert 'leadpact_activities_refused_total{field="reason",status="422"} 2.0' in text


async def test_no_response_is_refused_until_the_attempts_clause_is_met(
    fb: EmbeddedSystem,
) -> None:
    lead_id = await make_mql(fb)
    no_response = {"type": "rejected", "lead_id": lead_id, "reason": "no_response"}
    refused = await post(fb, no_response)
    assert refused.status_code == 409
    assert refused.json()["owed"] == {"attempts": 6, "channels": 2}
    assert "6 more attempt(s) and 2 more channel(s) owed" in refused.json()["detail"]

    for i in range(5):
        fb.clock.advance(timedelta(hours=1))
        answer = await post(
            fb,
            {"type": "contacted", "lead_id": lead_id, "channel": "phone", "outcome": "no_answer"},
        )
        assert answer.status_code == 202, (i, answer.text)
    refused = await post(fb, no_response)
    assert refused.status_code == 409
    assert refused.json()["owed"] == {"attempts": 1, "channels": 1}

    # A contact reported by another service (on the bus) counts too.
    fb.clock.advance(timedelta(hours=1))
    await fb.publish(
        LeadContacted(
            lead_id=lead_id, channel="email", outcome="no_answer", contacted_at=fb.clock.now()
        )
    )

    async def accepted() -> bool:
        return (await post(fb, no_response)).status_code == 202

    await eventually(accepted)
    assert len(await eventually(lambda: events_of(fb, "lead.rejected", lead_id))) == 1


async def test_a_redelivered_contact_counts_once(fb: EmbeddedSystem) -> None:
    lead_id = await make_mql(fb)
    event = envelope(
        LeadContacted(
            lead_id=lead_id, channel="phone", outcome="no_answer", contacted_at=fb.clock.now()
        ),
        source="test",
        time=fb.clock.now(),
    )
    for _ in range(3):
        await fb.bus.publish(event.topic, event.subject, event.to_json())
    # The same attempt again under another event id (a CRM retry) counts once as well.
    await fb.publish(event.data)

    async def counted() -> bool:
        text = await metrics_text(fb)
        return 'leadpact_events_consumed_total{topic="lead.contacted"} 4.0' in text

    await eventually(counted)
    body = (await fb[SERVICE].get(f"/v1/leads/{lead_id}")).json()
    assert body["attempts_made"] == 1
    assert body["attempts_owed"] == 5
    assert body["first_contact_at"] is not None


async def test_recyclable_rejection_is_recycled_after_the_delay_once(
    fb: EmbeddedSystem,
) -> None:
    lead_id = await make_mql(fb)
    kept = await make_mql(fb)
    for lead in (lead_id, kept):
        answer = await post(fb, {"type": "rejected", "lead_id": lead, "reason": "out_of_budget"})
        assert answer.status_code == 202
    not_recycled = await make_mql(fb)
    answer = await post(fb, {"type": "rejected", "lead_id": not_recycled, "reason": "no_authority"})
    assert answer.status_code == 202

    async def scheduled() -> bool:
        text = await metrics_text(fb)
        return 'leadpact_events_consumed_total{topic="lead.rejected"} 3.0' in text

    await eventually(scheduled)
    # Won back before the delay: the kept lead is not recycled.
    assert (await post(fb, {"type": "accepted", "lead_id": kept})).status_code == 202
    await eventually(lambda: events_of(fb, "lead.accepted", kept))
    await eventually(scheduled)

    fb.clock.advance(timedelta(days=89))
    fb.clock.advance(timedelta(hours=23))
    assert events_of(fb, "lead.recycled", lead_id) == []
    fb.clock.advance(timedelta(hours=1, seconds=1))
    recycled = await eventually(lambda: events_of(fb, "lead.recycled", lead_id))
    assert recycled[0].data.reason == "out_of_budget"
    fb.clock.advance(timedelta(days=30))
    text = await metrics_text(fb)
    assert 'leadpact_leads_recycled_total{reason="out_of_budget"} 1.0' in text
    assert len(events_of(fb, "lead.recycled", lead_id)) == 1
    assert events_of(fb, "lead.recycled", kept) == []
    assert events_of(fb, "lead.recycled", not_recycled) == []
    body = await eventually(lambda: _recycled_at(fb, lead_id))
    assert body


async def _recycled_at(fb: EmbeddedSystem, lead_id: str) -> str | None:
    return (await fb[SERVICE].get(f"/v1/leads/{lead_id}")).json().get("recycled_at")


async def test_openapi_lists_every_route(fb: EmbeddedSystem) -> None:
    schema = (await fb[SERVICE].get("/openapi.json")).json()
    for path in (
        "/v1/activities",
        "/v1/kpis",
        "/v1/funnel",
        "/v1/cohorts",
        "/v1/spend",
        "/v1/spend/import",
        "/v1/attribution",
        "/v1/bonus",
        "/v1/webhooks/hubspot",
        "/v1/webhooks/generic",
        "/v1/crm-links",
        "/reports/weekly",
    ):
        assert path in schema["paths"], path
    assert (await fb[SERVICE].get("/readyz")).status_code == 200
