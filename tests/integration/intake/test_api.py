"""The generic JSON API: clean data, resubmissions, keys, limits, and the archive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from intake.cli import app as cli
from intake.domain.signatures import typeform_signature
from tests.fixtures.waiting import eventually
from tests.integration.intake.conftest import TYPEFORM_SECRET, IntakeFactory

LEAD = {
    "email": " Ana.Garcia@ACME.example ",
    "phone": "612 345 678",
    "first_name": "  Ana ",
    "last_name": "García  López",
    "country": "Spain",
    "landing_url": "https://acme.example/demo?utm_source=google&utm_medium=cpc&utm_term=crm",
    "consent": {"marketing": True, "text": "I agree."},
    "favourite_colour": "teal",
}


async def cli_run(tmp_path: Path, *args: str) -> Result:
    """The real CLI on the intake database of the embedded system (in a thread, because
    the CLI runs its own event loop)."""
    env = {"LEADPACT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'intake.db'}"}
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


async def test_a_lead_is_cleaned_and_unknown_fields_are_kept(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory()
    answer = await system["intake"].post("/v1/leads", json=LEAD)
    assert answer.status_code == 202, answer.text
    lead = (await eventually(lambda: system.events("lead.created")))[0].data
    assert lead.email == "ana.garcia@acme.example"
    assert lead.phone == "+34612345678"
    assert (lead.first_name, lead.last_name, lead.country) == ("Ana", "García López", "ES")
    assert (lead.source.utm_source, lead.source.utm_medium) == ("google", "cpc")
    assert lead.attributes["utm_term"] == "crm"
    assert lead.attributes["favourite_colour"] == "teal"
    assert lead.consent is not None and lead.consent.given_at == system.clock.now()
    assert lead.existing_customer is None  # crm-sync is down in this test
    assert lead.raw_ref and lead.raw_ref.startswith("raw:")


@pytest.mark.parametrize(
    ("field", "value"),
    [("phone", "12"), ("country", "Atlantis"), ("email", "ana@"), ("company_size", 0)],
)
async def test_bad_fields_are_422_naming_the_field(
    intake_factory: IntakeFactory, field: str, value: object
) -> None:
    system = await intake_factory()
    answer = await system["intake"].post("/v1/leads", json={**LEAD, field: value})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", field]


async def test_the_same_person_within_the_window_is_a_resubmission(
    intake_factory: IntakeFactory,
) -> None:
    system = await intake_factory(resubmission_window_seconds=3600)
    first = (await system["intake"].post("/v1/leads", json=LEAD)).json()
    system.clock.advance(600)
    again = (
        await system["intake"].post("/v1/leads", json={**LEAD, "email": "other@acme.example"})
    ).json()  # same phone: same person
    assert again == {"lead_id": first["lead_id"], "status": "resubmitted"}
    activity = (await eventually(lambda: system.events("lead.activity")))[0].data
    assert (activity.lead_id, activity.activity) == (first["lead_id"], "resubmitted")

    system.clock.advance(3600)
    later = (await system["intake"].post("/v1/leads", json=LEAD)).json()
    assert later["status"] == "accepted" and later["lead_id"] != first["lead_id"]


async def test_idempotency_key_returns_the_stored_answer(intake_factory: IntakeFactory) -> None:
    system = await intake_factory()
    headers = {"Idempotency-Key": "abc"}
    first = await system["intake"].post("/v1/leads", json=LEAD, headers=headers)
    second = await system["intake"].post("/v1/leads", json=LEAD, headers=headers)
    assert (
        first.json() == second.json() == {"lead_id": first.json()["lead_id"], "status": "accepted"}
    )
    other = await system["intake"].post(
        "/v1/leads", json={**LEAD, "company": "Other"}, headers=headers
    )
    assert other.status_code == 422 and "Idempotency-Key" in other.text


@pytest.mark.parametrize("name", ["Idempotency-Key", "X-API-Key"])
async def test_an_overlong_header_is_422_naming_it(
    intake_factory: IntakeFactory, name: str
) -> None:
    """The route reads its headers itself; they keep the limit and the error shape of
    FastAPI's header validation, as its OpenAPI document says."""
    system = await intake_factory()
    answer = await system["intake"].post("/v1/leads", json=LEAD, headers={name: "k" * 201})
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["header", name.lower()]
    assert problem["type"] == "string_too_long" and "200 characters" in problem["msg"]
    fine = await system["intake"].post(
        "/v1/leads", json=LEAD, headers={"Idempotency-Key": "k" * 200}
    )
    assert fine.status_code == 202


async def test_size_and_content_type_are_checked(intake_factory: IntakeFactory) -> None:
    system = await intake_factory(max_body_bytes=2048)
    big = {**LEAD, "notes": "x" * 4096}
    assert (await system["intake"].post("/v1/leads", json=big)).status_code == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 512

    chunked = await system["intake"].post(
        "/v1/leads", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    xml = await system["intake"].post(
        "/v1/leads", content=b"<lead/>", headers={"Content-Type": "application/xml"}
    )
    assert xml.status_code == 415 and "Content-Type" in xml.text
    bad_json = await system["intake"].post(
        "/v1/leads", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422


async def test_api_keys_scopes_revocation_and_rate_limits(
    intake_factory: IntakeFactory, tmp_path: Path
) -> None:
    system = await intake_factory(require_api_key=True, rate_limit_per_second=1, rate_limit_burst=2)
    intake = system["intake"]
    assert (await intake.post("/v1/leads", json=LEAD)).status_code == 401

    key = (await cli_run(tmp_path, "keys", "create", "--source", "hubspot")).output.strip()
    reader = (
        await cli_run(tmp_path, "keys", "create", "--source", "bi", "--scope", "leads:read")
    ).output.strip()
    listing = (await cli_run(tmp_path, "keys", "list")).output
    assert "hubspot" in listing and key not in listing  # only the hash is kept

    answer = await intake.post("/v1/leads", json=LEAD, headers={"X-API-Key": key})
    assert answer.status_code == 202
    stored = await intake.get(
        f"/v1/leads/{answer.json()['lead_id']}", headers={"X-API-Key": reader}
    )
    assert stored.json()["source"]["platform"] == "hubspot"  # the key's source
    denied = await intake.post("/v1/leads", json=LEAD, headers={"X-API-Key": reader})
    assert denied.status_code == 403

    other = {**LEAD, "email": "b@acme.example", "phone": None}
    second = await intake.post("/v1/leads", json=other, headers={"X-API-Key": key})
    assert second.status_code == 202
    limited = await intake.post("/v1/leads", json=other, headers={"X-API-Key": key})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    system.clock.advance(1)
    assert (
        await intake.post("/v1/leads", json=other, headers={"X-API-Key": key})
    ).status_code == 202

    key_id = key.removeprefix("lpk_").split("_")[0]
    await cli_run(tmp_path, "keys", "revoke", key_id)
    revoked = await intake.post("/v1/leads", json=other, headers={"X-API-Key": key})
    assert revoked.status_code == 401
    assert (
        await intake.post("/v1/leads", json=other, headers={"X-API-Key": "lpk_x_y"})
    ).status_code == 401


async def test_a_rejected_payload_is_archived_and_replayed_after_a_fix(
    intake_factory: IntakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Typeform answer the field map did not cover is rejected (no email, no phone);
    once the map is fixed, ``intake replay`` turns it into the lead."""
    system = await intake_factory()
    event = {
        "event_id": "e1",
        "event_type": "form_response",
        "form_response": {
            "form_id": "F1",
            "token": "t1",
            "answers": [
                {"type": "text", "text": "+34 612 000 111", "field": {"id": "q9", "ref": "mobile"}}
            ],
        },
    }
    body = orjson.dumps(event)
    headers = {
        "Typeform-Signature": typeform_signature(TYPEFORM_SECRET, body),
        "Content-Type": "application/json",
    }
    answer = await system["intake"].post(
        "/v1/platforms/typeform/webhook", content=body, headers=headers
    )
    assert answer.status_code == 422

    monkeypatch.setenv("LEADPACT_INTAKE_TYPEFORM_FIELD_MAPS", '{"F1": {"mobile": "phone"}}')
    replayed = (await cli_run(tmp_path, "replay", "--channel", "typeform")).output
    assert "accepted" in replayed and "replayed 1" in replayed
    created = await eventually(lambda: system.events("lead.created"), timeout=15)
    assert created[0].data.phone == "+34612000111"
    again = (await cli_run(tmp_path, "replay", "--channel", "typeform")).output
    assert "replayed 0" in again


async def test_submissions_arriving_together_share_a_transaction_and_stay_correct(
    intake_factory: IntakeFactory,
) -> None:
    """Group commit: many leads at once, among them the same person twice and a retried
    Google lead; every answer is right and the failing retry does not fail the others."""
    from tests.integration.intake.test_platforms import GOOGLE_LEAD

    system = await intake_factory()
    intake = system["intake"]
    people = [intake.post("/v1/leads", json={"email": f"p{i}@acme.example"}) for i in range(20)]
    twice = [intake.post("/v1/leads", json={"email": "same@acme.example"}) for _ in range(2)]
    google = [intake.post("/v1/platforms/google-ads/leads", json=GOOGLE_LEAD) for _ in range(3)]
    answers = await asyncio.gather(*people, *twice, *google)
    assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
    assert len({a.json()["lead_id"] for a in answers[:20]}) == 20
    assert sorted(a.json()["status"] for a in answers[20:22]) == ["accepted", "resubmitted"]
    assert len({a.json()["lead_id"] for a in answers[20:22]}) == 1
    assert sorted(a.json()["status"] for a in answers[22:]) == [
        "accepted",
        "duplicate",
        "duplicate",
    ]
    created = await eventually(lambda: len(system.events("lead.created")) == 22)
    assert created
