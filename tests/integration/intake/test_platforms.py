"""Each platform's signed webhook becomes one lead; a bad signature stores nothing; the
same payload twice is one lead."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request

from intake.domain.signatures import meta_signature, typeform_signature
from tests.fixtures.waiting import eventually
from tests.integration.intake.conftest import (
    GOOGLE_KEY,
    META_SECRET,
    TYPEFORM_SECRET,
    IntakeFactory,
)
from tests.integration.intake.stubs import http_stub

META_NOTIFICATION = {
    "object": "page",
    "entry": [
        {
            "id": "153125381133",
            "time": 1438292065,
            "changes": [
                {
                    "field": "leadgen",
                    "value": {
                        "leadgen_id": "444444444444",
                        "page_id": "153125381133",
                        "form_id": "555555555555",
                        "ad_id": "666",
                        "created_time": 1438292065,
                    },
                }
            ],
        }
    ],
}

GRAPH_LEAD = {
    "id": "444444444444",
    "created_time": "2026-11-25T10:00:00+0000",
    "field_data": [
        {"name": "full_name", "values": ["  Ana   García "]},
        {"name": "email", "values": ["Ana.Garcia@Acme.example"]},
        {"name": "phone_number", "values": ["612 345 678"]},
        {"name": "favourite_colour", "values": ["teal"]},
    ],
    "campaign_id": "777",
}


def graph_answer(request: Request) -> tuple[int, Any]:
    if request.query_params.get("access_token") != "page-token":
        return 400, {"error": {"message": "bad token"}}
    return 200, GRAPH_LEAD


async def test_meta_subscription_is_verified_with_the_token(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory()
    params = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"}
    ok = await system["intake"].get("/v1/platforms/meta/webhook", params=params)
    assert ok.status_code == 200 and ok.text == "42"
    wrong = {**params, "hub.verify_token": "nope"}
    assert (
        await system["intake"].get("/v1/platforms/meta/webhook", params=wrong)
    ).status_code == 403


async def test_a_signed_meta_notification_becomes_one_lead_fetched_from_graph(
    intake_factory: IntakeFactory,
) -> None:
    async with http_stub(graph_answer) as graph:
        system = await intake_factory(graph_base_url=graph.url)
        body = orjson.dumps(META_NOTIFICATION)
        headers = {
            "X-Hub-Signature-256": meta_signature(META_SECRET, body),
            "Content-Type": "application/json",
        }
        for _ in range(2):  # Meta retries: the same notification twice is one lead
            answer = await system["intake"].post(
                "/v1/platforms/meta/webhook", content=body, headers=headers
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["leadgen_ids"] == ["444444444444"]

        created = await eventually(lambda: system.events("lead.created"))
        lead = created[0].data
        assert (lead.email, lead.phone) == ("ana.garcia@acme.example", "+34612345678")
        assert (lead.first_name, lead.last_name) == ("Ana", "García")
        assert lead.source.platform == "meta" and lead.source.form == "555555555555"
        assert lead.attributes["favourite_colour"] == "teal"
        system.clock.advance(3600)
        await asyncio.sleep(0.2)
        assert len(system.events("lead.created")) == 1


async def test_a_graph_outage_delays_the_meta_lead_and_never_loses_it(
    intake_factory: IntakeFactory,
) -> None:
    async with http_stub(graph_answer) as graph:
        graph.down = True
        system = await intake_factory(graph_base_url=graph.url, graph_retries=2)
        body = orjson.dumps(META_NOTIFICATION)
        headers = {"X-Hub-Signature-256": meta_signature(META_SECRET, body)}
        answer = await system["intake"].post(
            "/v1/platforms/meta/webhook",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert answer.status_code == 200
        await eventually(lambda: len(graph.requests) >= 2)  # both attempts of the first try
        assert system.events("lead.created") == []

        graph.down = False

        def later() -> list[Any]:
            # The retry is due fetch_retry_seconds after the failure, on the clock.
            system.clock.advance(10)
            return system.events("lead.created")

        created = await eventually(later)
        assert created[0].data.email == "ana.garcia@acme.example"


async def test_a_badly_signed_meta_notification_is_401_and_stores_nothing(
    intake_factory: IntakeFactory,
) -> None:
    async with http_stub(graph_answer) as graph:
        system = await intake_factory(graph_base_url=graph.url)
        body = orjson.dumps(META_NOTIFICATION)
        for signature in ("sha256=" + "0" * 64, None):
            headers = {"Content-Type": "application/json"}
            if signature:
                headers["X-Hub-Signature-256"] = signature
            answer = await system["intake"].post(
                "/v1/platforms/meta/webhook", content=body, headers=headers
            )
            assert answer.status_code == 401
            assert "X-Hub-Signature-256" in answer.text
        system.clock.advance(3600)
        await asyncio.sleep(0.1)
        assert graph.requests == []
        assert system.events("lead.created") == []


GOOGLE_LEAD = {
    "lead_id": "Lead-abc-123",
    "user_column_data": [
        {"column_name": "Full Name", "string_value": "Luis Pérez", "column_id": "FULL_NAME"},
        {"column_name": "User Email", "string_value": "luis@acme.example", "column_id": "EMAIL"},
        {"column_name": "Phone", "string_value": "+34 699 111 222", "column_id": "PHONE_NUMBER"},
        {"column_name": "Country", "string_value": "Spain", "column_id": "COUNTRY"},
        {"column_name": "Budget?", "string_value": "50k", "column_id": "BUDGET"},
    ],
    "api_version": "1.0",
    "form_id": 40000000000,
    "campaign_id": 20000000000,
    "google_key": GOOGLE_KEY,
    "is_test": False,
    "gcl_id": "gclid-1",
}


async def test_a_google_ads_lead_is_mapped_by_column_id_once(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory()
    answers = [
        await system["intake"].post("/v1/platforms/google-ads/leads", json=GOOGLE_LEAD)
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["status"] for a in answers] == ["accepted", "duplicate"]
    assert answers[0].json()["lead_id"] == answers[1].json()["lead_id"]
    created = await eventually(lambda: system.events("lead.created"))
    lead = created[0].data
    assert (lead.first_name, lead.last_name, lead.country) == ("Luis", "Pérez", "ES")
    assert lead.phone == "+34699111222"
    assert lead.attributes["budget"] == "50k"
    assert lead.source.campaign == "20000000000"


async def test_google_test_leads_are_kept_apart(intake_factory: IntakeFactory) -> None:
    system = await intake_factory()
    answer = await system["intake"].post(
        "/v1/platforms/google-ads/leads",
        json={**GOOGLE_LEAD, "lead_id": "test-1", "is_test": True},
    )
    assert answer.json()["status"] == "test"
    stored = (await system["intake"].get(f"/v1/leads/{answer.json()['lead_id']}")).json()
    assert stored["is_test"] is True
    # a later real lead of the same person is a new lead, not a resubmission of the test
    real = await system["intake"].post("/v1/platforms/google-ads/leads", json=GOOGLE_LEAD)
    assert real.json()["status"] == "accepted"
    created = await eventually(lambda: system.events("lead.created"))
    assert [e.data.lead_id for e in created] == [real.json()["lead_id"]]


async def test_a_wrong_google_key_is_401_and_stores_nothing(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory()
    answer = await system["intake"].post(
        "/v1/platforms/google-ads/leads", json={**GOOGLE_LEAD, "google_key": "wrong"}
    )
    assert answer.status_code == 401 and "google_key" in answer.text
    retry = await system["intake"].post("/v1/platforms/google-ads/leads", json=GOOGLE_LEAD)
    assert retry.json()["status"] == "accepted"  # nothing of the refused one was kept


TYPEFORM_EVENT = {
    "event_id": "LtWXD3crgy",
    "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "submitted_at": "2026-11-20T10:02:00Z",
        "hidden": {"utm_source": "newsletter"},
        "answers": [
            {
                "type": "email",
                "email": "marta@acme.example",
                "field": {"id": "SMEUb7VJz92Q", "type": "email", "ref": "work_email"},
            },
            {
                "type": "text",
                "text": " Acme Robotics ",
                "field": {"id": "JwWggjAKtOkA", "type": "short_text", "ref": "org"},
            },
            {
                "type": "choice",
                "choice": {"label": "Director"},
                "field": {"id": "k6TP9oLGgHjl", "type": "multiple_choice", "ref": "role"},
            },
            {
                "type": "number",
                "number": 12,
                "field": {"id": "X4xJ2", "type": "number", "ref": "seats"},
            },
        ],
    },
}


async def test_a_signed_typeform_response_is_mapped_through_the_form_field_map(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory(
        typeform_field_maps={"lT4Z3j": {"org": "company", "role": "title"}}
    )
    body = orjson.dumps(TYPEFORM_EVENT)
    headers = {
        "Typeform-Signature": typeform_signature(TYPEFORM_SECRET, body),
        "Content-Type": "application/json",
    }
    answers = [
        await system["intake"].post("/v1/platforms/typeform/webhook", content=body, headers=headers)
        for _ in range(2)
    ]
    assert [a.json()["status"] for a in answers] == ["accepted", "duplicate"]
    lead = (await eventually(lambda: system.events("lead.created")))[0].data
    assert (lead.email, lead.company, lead.title) == (
        "marta@acme.example",
        "Acme Robotics",
        "Director",
    )
    assert lead.attributes["seats"] == 12
    assert lead.attributes["hidden_utm_source"] == "newsletter"

    bad = await system["intake"].post(
        "/v1/platforms/typeform/webhook",
        content=body,
        headers={**headers, "Typeform-Signature": typeform_signature("other", body)},
    )
    assert bad.status_code == 401


async def test_website_forms_urlencoded_honeypot_and_origin(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory(website_origins=["https://acme.example"])
    form = {
        "email": "pablo@acme.example",
        "name": "Pablo Ruiz",
        "page_url": "https://acme.example/demo?utm_source=google&utm_campaign=q4",
        "consent": "on",
        "consent_text": "I agree to be contacted.",
        "how_did_you_hear": "podcast",
    }
    origin = {"Origin": "https://acme.example"}
    answer = await system["intake"].post("/v1/platforms/website/forms", data=form, headers=origin)
    assert answer.status_code == 202, answer.text
    lead = (await eventually(lambda: system.events("lead.created")))[0].data
    assert lead.source.utm_source == "google" and lead.source.utm_campaign == "q4"
    assert lead.consent is not None and lead.consent.marketing is True
    assert lead.consent.text == "I agree to be contacted."
    assert lead.consent.given_at == system.clock.now()
    assert lead.attributes["how_did_you_hear"] == "podcast"
    double_click = await system["intake"].post(
        "/v1/platforms/website/forms", data=form, headers=origin
    )
    assert double_click.json() == {**answer.json(), "status": "duplicate"}

    bot = await system["intake"].post(
        "/v1/platforms/website/forms",
        json={"email": "bot@spam.example", "website": "http://spam.example"},
        headers=origin,
    )
    assert bot.status_code == 202
    foreign = await system["intake"].post(
        "/v1/platforms/website/forms", data=form, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    await asyncio.sleep(0.1)
    assert len(system.events("lead.created")) == 1


async def test_a_platform_retry_of_a_resubmission_is_not_a_second_activity(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory()
    first = await system["intake"].post("/v1/leads", json={"email": "luis@acme.example"})
    assert first.json()["status"] == "accepted"
    answers = [
        (await system["intake"].post("/v1/platforms/google-ads/leads", json=GOOGLE_LEAD)).json()
        for _ in range(2)
    ]
    assert [a["status"] for a in answers] == ["resubmitted", "duplicate"]
    assert {a["lead_id"] for a in answers} == {first.json()["lead_id"]}
    activities = await eventually(lambda: system.events("lead.activity"))
    await asyncio.sleep(0.1)
    assert len(system.events("lead.activity")) == len(activities) == 1


async def test_a_meta_lead_without_email_or_phone_is_archived_as_rejected_not_retried(
    intake_factory: IntakeFactory,
) -> None:
    nameless = {"id": "1", "field_data": [{"name": "full_name", "values": ["Ana"]}]}
    async with http_stub(lambda request: (200, nameless)) as graph:
        system = await intake_factory(graph_base_url=graph.url)
        body = orjson.dumps(META_NOTIFICATION)
        headers = {
            "X-Hub-Signature-256": meta_signature(META_SECRET, body),
            "Content-Type": "application/json",
        }
        answer = await system["intake"].post(
            "/v1/platforms/meta/webhook", content=body, headers=headers
        )
        assert answer.status_code == 200
        await eventually(lambda: len(graph.requests) == 1)
        system.clock.advance(3600)
        await asyncio.sleep(0.2)
        assert len(graph.requests) == 1  # a rejected lead is not fetched again and again
        assert system.events("lead.created") == []
