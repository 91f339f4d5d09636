"""Erasure: DELETE /v1/subjects?email= leaves no personal field of the person in crm-sync's
database and tells the other services through privacy.erased."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadpact.events import LeadContacted, LeadCreated
from tests.fixtures.waiting import eventually
from tests.integration.crm_sync.conftest import (
    CrmFactory,
    post_stripe,
    stripe_customer,
    stripe_invoice,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PERSONAL = ("ana.garcia", "García", "Garcia", "Calle Mayor", "612345678", "ESB12345678", "Ana")


def text_cells(db: Path) -> list[str]:
    """Every text value in every table of a SQLite database."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        cells: list[str] = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                cells += [
                    v.decode(errors="replace") if isinstance(v, bytes) else v
                    for v in row
                    if isinstance(v, str | bytes)
                ]
        return cells
    finally:
        conn.close()


async def test_an_erased_person_is_gone_from_crm_sync(
    crm_factory: CrmFactory, tmp_path: Path
) -> None:
    system = await crm_factory()
    client = system["crm-sync"]
    await system.publish(
        LeadCreated(
            lead_id="L1",
            email="Ana.Garcia@acme.example",
            phone="+34 612 34 56 78",
            first_name="Ana",
            last_name="García",
            company="Acme Robotics",
            created_at=NOW,
        )
    )
    await system.publish(
        LeadContacted(lead_id="L1", channel="phone", outcome="connected", contacted_at=NOW)
    )
    await post_stripe(system, stripe_customer("evt_1", name="Ana Garcia"))
    await post_stripe(system, stripe_invoice("evt_2"))

    async def timeline_complete() -> bool:
        found = (
            await client.get("/v1/customers/lookup", params={"email": "ana.garcia@acme.example"})
        ).json()
        if not found["customer"]:
            return False
        items = (
            await client.get(f"/v1/customers/{found['customer']['customer_id']}/timeline")
        ).json()
        return len(items) == 4

    await eventually(timeline_complete)
    assert (await client.delete("/v1/subjects", params={"email": "nobody"})).status_code == 422
    unknown = await client.delete("/v1/subjects", params={"email": "who@else.example"})
    assert unknown.status_code == 404 and "email" in unknown.text

    answer = await client.delete("/v1/subjects", params={"email": " ANA.Garcia@acme.example"})
    assert answer.status_code == 200, answer.text
    erased = answer.json()
    digest = hashlib.sha256(b"ana.garcia@acme.example").hexdigest()
    assert erased["subject_hash"] == digest and erased["lead_ids"] == ["L1"]

    events = await eventually(lambda: system.events("privacy.erased"))
    assert [(e.data.subject_hash, e.data.lead_ids, e.data.customer_id) for e in events] == [
        (digest, ["L1"], erased["customer_id"])
    ]
    lookup = await client.get("/v1/customers/lookup", params={"email": "ana.garcia@acme.example"})
    assert lookup.json()["customer"] is None
    record: dict[str, Any] = (await client.get(f"/v1/customers/{erased['customer_id']}")).json()
    assert record["erased"] is True and record["status"] == "customer"
    assert all(record[f] is None for f in ("email", "phone", "first_name", "last_name", "tax_id"))
    assert record["lifetime_value"] == "900.00"  # the invoice amounts are the company's books
    assert (await client.get("/v1/conflicts")).json() == []
    offers = (await client.get(f"/v1/customers/{erased['customer_id']}/offers")).json()
    assert offers[0]["description"] is None and offers[0]["amount"] == "100.00"

    # billing still sends the old record: it links to the bare id, nothing personal is kept
    resent = await post_stripe(
        system, stripe_customer("evt_9", kind="customer.updated", name="Ana Garcia")
    )
    assert resent.json()["customer_id"] == erased["customer_id"]

    def outbox_empty() -> bool:
        conn = sqlite3.connect(tmp_path / "var" / "crm-sync.db")
        try:
            return conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        finally:
            conn.close()

    await eventually(outbox_empty)  # the relay has published (and deleted) every event
    leftovers = [
        (word, cell)
        for cell in text_cells(tmp_path / "var" / "crm-sync.db")
        for word in PERSONAL
        if word.lower() in cell.lower()
    ]
    assert leftovers == []
    again = await client.delete("/v1/subjects", params={"email": "ana.garcia@acme.example"})
    assert again.status_code == 404
