"""Erasure across the whole embedded system: ``DELETE /v1/subjects?email=`` on crm-sync emits
``privacy.erased`` and no personal field of the person remains in any service's database."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually

SERVICES = ("intake", "scoring", "sla-monitor", "feedback", "crm-sync")
EMAIL = "ana.zubizarreta@acme.example"
ANA = {
    "email": " Ana.Zubizarreta@ACME.example ",
    "phone": "612 345 678",
    "first_name": "Anabel",
    "last_name": "Zubizarreta",
    "company": "Acme Robotics",
    "title": "Head of Operations",
    "company_size": 240,
    "country": "Spain",
    "consent": {"marketing": True, "text": "I agree, Anabel Zubizarreta."},
    "source": {"platform": "website", "campaign": "q4-demo"},
    "nickname": "Bellita",
}
PERSONAL = (
    "ana.zubizarreta",
    "Zubizarreta",
    "Anabel",
    "612345678",
    "612 345 678",
    "Head of Operations",
    "Bellita",
    "her mobile",
)
BEA = {"email": "bea.ortiz@other.example", "last_name": "Ortiz", "source": {"platform": "meta"}}


def cells(db: Path) -> list[tuple[str, str]]:
    """(table, text) of every text or blob value of every table of a SQLite database, raw
    and with JSON escapes undone (``García`` is ``Garc\\u00eda`` inside a JSON column)."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found: list[tuple[str, str]] = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode(errors="replace")
                    if not isinstance(value, str):
                        continue
                    found.append((table, value))
                    with contextlib.suppress(ValueError):
                        found.append((table, json.dumps(json.loads(value), ensure_ascii=False)))
        return found
    finally:
        conn.close()


def leftovers(var: Path, personal: tuple[str, ...]) -> list[str]:
    return [
        f"{service}.{table}: {word!r} in {text[:160]!r}"
        for service in SERVICES
        for table, text in cells(var / f"{service}.db")
        for word in personal
        if word.lower() in text.lower()
    ]


async def test_an_erased_person_remains_in_no_database(
    system_factory: SystemFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADPACT_INTAKE_CUSTOMER_CHECK", "false")  # no HTTP between services
    system = await system_factory()
    assert set(system.apps) == set(SERVICES)
    var = tmp_path / "var"
    intake, feedback, crm = system["intake"], system["feedback"], system["crm-sync"]

    answer = await intake.post("/v1/leads", json=ANA, headers={"Idempotency-Key": "form-1"})
    assert answer.status_code == 202, answer.text
    lead = answer.json()["lead_id"]
    assert (await intake.post("/v1/leads", json={**ANA, "phone": "12"})).status_code == 422
    other = (await intake.post("/v1/leads", json=BEA)).json()["lead_id"]

    async def scored() -> bool:
        return (await system["scoring"].get(f"/v1/scores/{lead}")).status_code == 200

    await eventually(scored)
    contact = {"type": "contacted", "lead_id": lead, "channel": "phone", "outcome": "connected"}
    assert (await feedback.post("/v1/activities", json={**contact, "owner": "rep-1"})).is_success
    rejection = {
        "type": "rejected",
        "lead_id": lead,
        "reason": "other",
        "note": "Anabel asked us to call her mobile",
        "owner": "rep-1",
    }
    assert (await feedback.post("/v1/activities", json=rejection)).is_success

    async def known_everywhere() -> bool:
        found = await crm.get("/v1/customers/lookup", params={"email": EMAIL})
        customer = found.json().get("customer")
        timeline = (
            (await crm.get(f"/v1/customers/{customer['customer_id']}/timeline")).json()
            if customer
            else []
        )
        funnel = (await feedback.get(f"/v1/leads/{lead}")).json()
        return len(timeline) >= 3 and bool(funnel.get("rejected_at"))

    await eventually(known_everywhere)
    assert leftovers(var, PERSONAL)  # the scan sees the person before the erasure

    erased = await crm.delete("/v1/subjects", params={"email": EMAIL})
    assert erased.status_code == 200, erased.text
    assert erased.json()["lead_ids"] == [lead]
    event = (await eventually(lambda: system.events("privacy.erased")))[0]

    def handled_by(service: str) -> bool:
        conn = sqlite3.connect(var / f"{service}.db")
        try:
            inbox = conn.execute("SELECT 1 FROM inbox WHERE event_id = ?", (event.id,)).fetchall()
            outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            return bool(inbox) and outbox == 0
        finally:
            conn.close()

    await eventually(lambda: all(handled_by(s) for s in ("intake", "scoring", "feedback")))
    assert leftovers(var, PERSONAL) == []

    # What the KPIs count is still there; somebody else is untouched.
    funnel = (await feedback.get(f"/v1/leads/{lead}")).json()
    assert funnel["mql_at"] and funnel["first_contact_at"] and funnel["rejected_at"]
    assert (await system["scoring"].get(f"/v1/scores/{lead}")).json()["tier"] == "mql"
    assert (await intake.get(f"/v1/leads/{lead}")).json()["company"] == "Acme Robotics"
    assert (await intake.get(f"/v1/leads/{other}")).json()["email"] == BEA["email"]
    assert not [t for t in ("privacy.erased.dlq",) if system.bus.messages(t)]
