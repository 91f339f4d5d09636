"""The same golden-record flows on real PostgreSQL: webhooks, matching, review, merge and
un-merge, offers, outbound sync and erasure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from leadpact.events import LeadCreated
from tests.fixtures.system import EmbeddedSystem
from tests.fixtures.waiting import eventually
from tests.integration.crm_sync.conftest import Target, post_stripe, stripe_customer, stripe_invoice

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def test_the_golden_record_lifecycle_on_postgres(
    pg_crm: Callable[..., Awaitable[EmbeddedSystem]],
    http_targets: Callable[[], Awaitable[Target]],
) -> None:
    target = await http_targets()
    system = await pg_crm(crm_push_url=target.url, push_poll_seconds=0.05)
    client = system["crm-sync"]
    await system.publish(
        LeadCreated(
            lead_id="L1",
            email="ana@gmail.example",
            first_name="Ana",
            last_name="García",
            company="Acme Robotics",
            created_at=NOW,
        )
    )

    async def lead_record() -> dict[str, Any] | None:
        answer = await client.get("/v1/customers/lookup", params={"email": "ana@gmail.example"})
        return answer.json()["customer"]  # type: ignore[no-any-return]

    first = await eventually(lead_record)
    # an unsure pair (other company) → review → accept → undo
    unsure = await post_stripe(
        system,
        stripe_customer(
            "evt_1",
            "cus_9",
            email="ana@globex.example",
            name="Ana Garcia",
            metadata={"company": "Globex"},
            address={
                "line1": "Gran Via 2",
                "postal_code": "28001",
                "city": "Madrid",
                "country": "ES",
            },
        ),
    )
    (review,) = (await client.get("/v1/reviews")).json()
    accepted = (
        await client.post(f"/v1/reviews/{review['review_id']}", json={"decision": "accept"})
    ).json()
    merged = (await client.get(f"/v1/customers/{unsure.json()['customer_id']}")).json()
    assert merged["customer_id"] == first["customer_id"]
    assert (await client.post(f"/v1/merges/{accepted['merge_id']}/undo")).status_code == 200
    apart = (await client.get(f"/v1/customers/{unsure.json()['customer_id']}")).json()
    assert apart["customer_id"] == unsure.json()["customer_id"]
    # the same company: matched automatically; paid invoice with a discount; replay no-op
    same = await post_stripe(
        system, stripe_customer("evt_2", email="ana@acme.example", name="Ana Garcia")
    )
    assert same.json()["customer_id"] == first["customer_id"]
    results = await asyncio.gather(
        *(post_stripe(system, stripe_invoice("evt_3")) for _ in range(3))
    )
    assert sorted(r.json()["status"] for r in results) == ["accepted", "duplicate", "duplicate"]
    record = (await client.get(f"/v1/customers/{first['customer_id']}")).json()
    assert record["status"] == "customer" and record["lifetime_value"] == "900.00"
    assert len((await client.get(f"/v1/customers/{first['customer_id']}/offers")).json()) == 1
    assert (await client.get("/v1/conflicts", params={"customer_id": first["customer_id"]})).json()
    await eventually(
        lambda: any(b["customer_id"] == first["customer_id"] for _, b in target.requests)
    )
    # erasure
    erased = await client.delete("/v1/subjects", params={"email": "ana.garcia@acme.example"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["lead_ids"] == ["L1"]
    gone = await client.get("/v1/customers/lookup", params={"email": "ana@gmail.example"})
    assert gone.json()["customer"] is None
    await eventually(lambda: system.events("privacy.erased"))
