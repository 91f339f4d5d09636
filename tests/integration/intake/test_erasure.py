"""privacy.erased in intake: leads, archive, idempotency answers and outbox keep nothing that
names the person; counts and timestamps stay."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from intake.store import Base
from leadpact.events import PrivacyErased
from leadpact.messaging import MESSAGING
from tests.fixtures.erasure_scan import dump_database, mentions_of
from tests.fixtures.waiting import eventually
from tests.integration.intake.conftest import IntakeFactory

ANA = {
    "email": " Ana.Garcia@ACME.example ",
    "phone": "612 345 678",
    "first_name": "Ana",
    "last_name": "Zubizarreta",
    "company": "Acme Robotics",
    "title": "Head of Operations",
    "company_size": 240,
    "country": "Spain",
    "consent": {"marketing": True, "text": "I agree, Ana Zubizarreta."},
    "source": {"platform": "website", "campaign": "q4-demo"},
    "nickname": "Anita",
}
PERSONAL = ("ana.garcia", "612345678", "612 345 678", "Zubizarreta", "Anita", "Head of Oper")
BEA = {"email": "bea.ortiz@other.example", "first_name": "Bea", "last_name": "Ortiz"}


async def test_an_erased_person_is_named_nowhere_in_intake(
    intake_factory: IntakeFactory, tmp_path: Path
) -> None:
    system = await intake_factory(customer_check=False, resubmission_window_seconds=3600)
    client = system["intake"]
    first = await client.post("/v1/leads", json=ANA, headers={"Idempotency-Key": "ana-form-1"})
    assert first.status_code == 202, first.text
    ana_1 = first.json()["lead_id"]
    again = await client.post("/v1/leads", json={**ANA, "title": "Head of Operations EU"})
    assert again.json() == {"lead_id": ana_1, "status": "resubmitted"}
    unreadable = await client.post("/v1/leads", json={**ANA, "phone": "12"})
    assert unreadable.status_code == 422  # archived as rejected, linked to no lead
    system.clock.advance(timedelta(hours=2))  # outside the window: a second lead of Ana
    later = await client.post("/v1/leads", json=ANA)
    ana_2 = later.json()["lead_id"]
    assert ana_2 != ana_1
    bea = (await client.post("/v1/leads", json=BEA)).json()["lead_id"]
    await eventually(lambda: len(system.events("lead.created")) == 3)

    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'intake.db'}"
    before = await dump_database(url, [Base.metadata, MESSAGING])
    assert mentions_of(before, PERSONAL)  # the scan sees the person before the erasure

    # crm-sync knew only the first lead; the second is found by the hash of the email.
    erasure = PrivacyErased(
        subject_hash=hashlib.sha256(b"ana.garcia@acme.example").hexdigest(),
        lead_ids=[ana_1],
        customer_id="C-ana",
        erased_at=system.clock.now(),
    )
    await system.publish(erasure)

    async def erased() -> bool:
        leads = [(await client.get(f"/v1/leads/{i}")).json() for i in (ana_1, ana_2)]
        return all(lead["email"] is None for lead in leads)

    await eventually(erased)
    await system.publish(erasure)  # a second request for the same person changes nothing
    await eventually(lambda: len(system.bus.messages("privacy.erased")) == 2)

    after = await dump_database(url, [Base.metadata, MESSAGING])
    assert mentions_of(after, PERSONAL) == []
    # What the funnel counts stays: every lead and every archived payload.
    assert len(after["leads"]) == len(before["leads"]) == 3
    assert len(after["raw_submissions"]) == len(before["raw_submissions"]) == 5
    kept = (await client.get(f"/v1/leads/{ana_1}")).json()
    assert kept["company"] == "Acme Robotics" and kept["company_size"] == 240
    assert kept["source"]["campaign"] == "q4-demo" and kept["country"] == "ES"
    assert (kept["phone"], kept["first_name"], kept["title"], kept["attributes"]) == (
        None,
        None,
        None,
        {},
    )
    # Somebody else is untouched.
    other = (await client.get(f"/v1/leads/{bea}")).json()
    assert (other["email"], other["last_name"]) == ("bea.ortiz@other.example", "Ortiz")
    assert mentions_of(after, ["bea.ortiz@other.example"])

    # The idempotency answer is gone, so the key no longer replays the erased lead; the
    # same person submitting again is a new lead with fresh consent.
    anew = await client.post("/v1/leads", json=ANA, headers={"Idempotency-Key": "ana-form-1"})
    assert anew.status_code == 202 and anew.json()["lead_id"] not in (ana_1, ana_2)
