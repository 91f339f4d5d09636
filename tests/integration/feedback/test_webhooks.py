"""Signed CRM webhooks, embedded: HubSpot v3 and the generic HMAC webhook turn into the right
events; unsigned, wrongly signed, stale or altered requests are refused and emit nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from feedback.domain.webhooks import generic_signature, hubspot_v3_signature
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import SERVICE, events_of, make_mql, metrics_text

HUBSPOT_SECRET = "hs-client-secret"
GENERIC_SECRET = "generic-secret"
HUBSPOT_URL = f"http://{SERVICE}/v1/webhooks/hubspot"


@pytest.fixture
async def fb(system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch) -> EmbeddedSystem:
    monkeypatch.setenv("LEADPACT_FEEDBACK_HUBSPOT_CLIENT_SECRET", HUBSPOT_SECRET)
    monkeypatch.setenv("LEADPACT_FEEDBACK_WEBHOOK_SECRET", GENERIC_SECRET)
    return await system_factory(only=[SERVICE])


def ms(system: EmbeddedSystem, shift_seconds: float = 0) -> str:
    return str(int((system.clock.now().timestamp() + shift_seconds) * 1000))


async def hubspot(
    system: EmbeddedSystem,
    events: list[dict[str, Any]],
    *,
    secret: str = HUBSPOT_SECRET,
    age_seconds: float = 0,
    tamper: bool = False,
) -> Any:
    body = orjson.dumps(events)
    ts = ms(system, -age_seconds)
    signature = hubspot_v3_signature(secret, "POST", HUBSPOT_URL, body, ts)
    if tamper:
        body = body.replace(b"CONNECTED", b"UNQUALIFIED")
    return await system[SERVICE].post(
        "/v1/webhooks/hubspot",
        content=body,
        headers={
            "content-type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": ts,
        },
    )


def change(
    event_id: int, obj: str, object_id: int, prop: str, value: str, at: str
) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 1,
        "portalId": 62515,
        "occurredAt": int(at),
        "subscriptionType": f"{obj}.propertyChange",
        "attemptNumber": 0,
        "objectId": object_id,
        "propertyName": prop,
        "propertyValue": value,
        "changeSource": "CRM",
    }


async def test_signed_hubspot_events_become_lead_events(fb: EmbeddedSystem) -> None:
    lead_id = await make_mql(fb)
    now = ms(fb)
    answer = await hubspot(
        fb,
        [
            change(1, "contact", 501, "leadpact_lead_id", lead_id, now),
            change(2, "contact", 501, "hs_lead_status", "CONNECTED", now),
            change(3, "deal", 9001, "leadpact_lead_id", lead_id, now),
            change(4, "deal", 9001, "amount", "15000.00", now),
            change(5, "contact", 501, "lifecyclestage", "salesqualifiedlead", now),
            change(6, "deal", 9001, "dealstage", "closedwon", now),
            change(7, "contact", 777, "hs_lead_status", "CONNECTED", now),  # unknown contact
            change(8, "contact", 501, "firstname", "Ana", now),  # not mapped
        ],
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 3
    assert {s["eventId"] for s in body["skipped"]} == {7, 8}
    contacted = await eventually(lambda: events_of(fb, "lead.contacted", lead_id))
    assert contacted[0].data.channel == "phone" and contacted[0].data.outcome == "connected"
    assert await eventually(lambda: events_of(fb, "lead.accepted", lead_id))
    deal = (await eventually(lambda: events_of(fb, "deal.closed", lead_id)))[0].data
    assert deal.won and str(deal.amount) == "15000.00"

    again = await hubspot(fb, [change(2, "contact", 501, "hs_lead_status", "CONNECTED", now)])
    assert again.json()["duplicates"] == 1
    assert len(events_of(fb, "lead.contacted", lead_id)) == 1

    # Calls (and emails, meetings) on a linked contact are contact attempts.
    call = {
        "eventId": 10,
        "subscriptionType": "call.creation",
        "objectId": 501,
        "occurredAt": int(now),
    }
    assert (await hubspot(fb, [call])).json()["accepted"] == 1


@pytest.mark.parametrize(
    ("kwargs", "header", "result"),
    [
        ({"secret": "not-the-secret"}, "X-HubSpot-Signature-v3", "bad_signature"),
        ({"age_seconds": 301}, "X-HubSpot-Request-Timestamp", "stale"),
        ({"tamper": True}, "X-HubSpot-Signature-v3", "bad_signature"),
    ],
)
async def test_bad_hubspot_requests_are_refused(
    fb: EmbeddedSystem, kwargs: dict[str, Any], header: str, result: str
) -> None:
    lead_id = await make_mql(fb)
    now = ms(fb)
    answer = await hubspot(
        fb,
        [
            change(1, "contact", 501, "leadpact_lead_id", lead_id, now),
            change(2, "contact", 501, "hs_lead_status", "CONNECTED", now),
        ],
        **kwargs,
    )
    assert answer.status_code == 401
    assert answer.json()["detail"][0]["loc"] == ["header", header]
    text = await metrics_text(fb)
    assert f'leadpact_crm_webhooks_total{{crm="hubspot",result="{result}"}} 1.0' in text
    unsigned = await fb[SERVICE].post("/v1/webhooks/hubspot", content=b"[]")
    assert unsigned.status_code == 401
    # Nothing was linked or emitted.
    assert (await fb[SERVICE].get(f"/v1/leads/{lead_id}")).json()["attempts_made"] == 0
    assert events_of(fb, "lead.contacted", lead_id) == []


async def generic(
    system: EmbeddedSystem, payload: Any, *, secret: str = GENERIC_SECRET, age: int = 0
) -> Any:
    body = orjson.dumps(payload)
    ts = str(int(system.clock.now().timestamp()) - age)
    return await system[SERVICE].post(
        "/v1/webhooks/generic",
        content=body,
        headers={
            "content-type": "application/json",
            "X-Leadpact-Signature": generic_signature(secret, ts, body),
            "X-Leadpact-Timestamp": ts,
        },
    )


async def test_generic_webhook_maps_statuses(fb: EmbeddedSystem) -> None:
    lead_id = await make_mql(fb)
    answer = await generic(
        fb,
        {
            "events": [
                {
                    "id": "sf-1",
                    "lead_id": lead_id,
                    "status": "Working - Contacted",
                    "owner": "luis",
                },
                {"id": "sf-2", "lead_id": lead_id, "status": "Unqualified"},
                {"id": "sf-3", "lead_id": lead_id, "status": "won", "amount": "900"},
            ]
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 3
    rejected = await eventually(lambda: events_of(fb, "lead.rejected", lead_id))
    assert rejected[0].data.reason == "no_authority"
    assert (await eventually(lambda: events_of(fb, "deal.closed", lead_id)))[0].data.won
    again = await generic(
        fb, {"events": [{"id": "sf-1", "lead_id": lead_id, "status": "Attempted"}]}
    )
    assert again.json() == {"accepted": 0, "duplicates": 1, "event_ids": []}


@pytest.mark.parametrize(
    ("event", "status", "loc"),
    [
        ({"status": "Sleeping"}, 422, ["body", "events", 0, "status"]),
        ({"status": "rejected", "reason": "meh"}, 422, ["body", "events", 0, "reason"]),
        ({"status": "rejected", "reason": "no_response"}, 409, ["body", "events", 0, "reason"]),
        (
            {"status": "contacted", "channel": "fax", "outcome": "connected"},
            422,
            ["body", "events", 0, "channel"],
        ),
        ({"status": "won", "amount": "x"}, 422, ["body", "events", 0, "amount"]),
    ],
)
async def test_generic_refusals_name_the_field(
    fb: EmbeddedSystem, event: dict[str, Any], status: int, loc: list[Any]
) -> None:
    lead_id = await make_mql(fb)
    answer = await generic(fb, {"events": [{"lead_id": lead_id, **event}]})
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"][0]["loc"] == loc
    assert events_of(fb, "lead.rejected", lead_id) == []


async def test_generic_webhook_refuses_bad_signatures(fb: EmbeddedSystem) -> None:
    payload = {"events": [{"lead_id": "x", "status": "accepted"}]}
    assert (await generic(fb, payload, secret="wrong")).status_code == 401
    stale = await generic(fb, payload, age=400)
    assert stale.status_code == 401 and "X-Leadpact-Timestamp" in stale.text
    assert events_of(fb, "lead.accepted", "x") == []
