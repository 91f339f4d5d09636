"""Intake takes a lead over HTTP, stores it, and emits lead.created once."""

from __future__ import annotations

from leadpact.events import decode
from tests.fixtures.system import EmbeddedSystem
from tests.fixtures.waiting import eventually

LEAD = {
    "email": "Ana.Garcia@Acme.example",
    "first_name": "  Ana ",
    "company": "Acme",
    "title": "Head of Operations",
    "company_size": 120,
    "source": {"platform": "website", "campaign": "q4"},
}


async def test_a_lead_is_stored_and_announced(system: EmbeddedSystem) -> None:
    answer = await system["intake"].post("/v1/leads", json=LEAD)
    assert answer.status_code == 202
    lead_id = answer.json()["lead_id"]

    stored = (await system["intake"].get(f"/v1/leads/{lead_id}")).json()
    assert stored["email"] == "ana.garcia@acme.example"
    assert stored["first_name"] == "Ana"

    created = await eventually(lambda: system.bus.messages("lead.created"))
    event = decode(created[0].value)
    assert event.subject == lead_id
    assert event.contractversion == "test-fast.1"


async def test_a_lead_without_email_or_phone_is_refused_naming_the_fields(
    system: EmbeddedSystem,
) -> None:
    answer = await system["intake"].post("/v1/leads", json={"first_name": "Ana"})
    assert answer.status_code == 422
    assert "email or phone is required" in answer.text


async def test_a_bad_email_is_refused_naming_the_field(system: EmbeddedSystem) -> None:
    answer = await system["intake"].post("/v1/leads", json={"email": "not-an-email"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "email"]


async def test_a_retry_with_the_same_idempotency_key_yields_one_lead(
    system: EmbeddedSystem,
) -> None:
    headers = {"Idempotency-Key": "form-123"}
    first = await system["intake"].post("/v1/leads", json=LEAD, headers=headers)
    second = await system["intake"].post("/v1/leads", json=LEAD, headers=headers)
    assert first.json()["lead_id"] == second.json()["lead_id"]

    other = await system["intake"].post(
        "/v1/leads", json={**LEAD, "company": "Other"}, headers=headers
    )
    assert other.status_code == 422
    assert "Idempotency-Key" in other.text


async def test_an_unknown_lead_is_404(system: EmbeddedSystem) -> None:
    assert (await system["intake"].get("/v1/leads/nope")).status_code == 404
