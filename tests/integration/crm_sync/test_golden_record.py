"""crm-sync builds one record per person from lead and deal events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.events import DealClosed, LeadContacted, LeadCreated, envelope
from leadpact.service import create_app
from leadpact.settings import Settings
from tests.fixtures.system import TEST_CONTRACT, SystemFactory
from tests.fixtures.waiting import eventually

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def lead(lead_id: str, email: str = "Ana@Acme.example", **extra: object) -> LeadCreated:
    return LeadCreated(
        lead_id=lead_id, email=email, first_name="Ana", company="Acme", created_at=NOW, **extra
    )


async def lookup(client: httpx.AsyncClient, **params: str) -> dict[str, object]:
    answer = await client.get("/v1/customers/lookup", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_lead_becomes_a_customer_record(system_factory: SystemFactory) -> None:
    system = await system_factory(only=["crm-sync"])
    await system.publish(lead("L1", phone="+34 612 34 56 78"))
    client = system["crm-sync"]

    async def found() -> dict[str, object] | None:
        return (await lookup(client, email="ana@acme.example"))["customer"]  # type: ignore[return-value]

    customer = await eventually(found)
    assert customer is not None
    assert customer["lead_ids"] == ["L1"]
    assert customer["phone"] == "+34612345678"
    assert (await lookup(client, email="ana@acme.example"))["is_customer"] is False
    record = await client.get(f"/v1/customers/{customer['customer_id']}")
    assert record.json()["name"] == "Ana"
    # published by the outbox relay after the commit: waited for, not assumed
    updates = await eventually(lambda: system.events("customer.updated"))
    assert [u.subject for u in updates] == [customer["customer_id"]]


async def test_the_same_person_twice_is_one_customer(system_factory: SystemFactory) -> None:
    system = await system_factory(only=["crm-sync"])
    await system.publish(lead("L1"))
    await system.publish(lead("L2", email="ana@ACME.example"))
    client = system["crm-sync"]

    async def both_linked() -> bool:
        customer = (await lookup(client, email="ana@acme.example"))["customer"]
        return bool(customer) and sorted(customer["lead_ids"]) == ["L1", "L2"]  # type: ignore[index]

    await eventually(both_linked)


async def test_a_won_deal_makes_a_paying_customer_with_a_timeline(
    system_factory: SystemFactory,
) -> None:
    system = await system_factory(only=["crm-sync"])
    await system.publish(lead("L1"))
    await system.publish(
        LeadContacted(
            lead_id="L1", channel="phone", outcome="connected", contacted_at=NOW, owner="maria"
        )
    )
    await system.publish(
        DealClosed(lead_id="L1", won=True, amount=Decimal("1200.50"), closed_at=NOW)
    )
    client = system["crm-sync"]

    async def paying() -> bool:
        return bool((await lookup(client, email="ana@acme.example"))["is_customer"])

    await eventually(paying)
    customer = (await lookup(client, email="ana@acme.example"))["customer"]
    assert customer["lifetime_value"] == "1200.50"  # type: ignore[index]
    path = f"/v1/customers/{customer['customer_id']}/timeline"  # type: ignore[index]

    async def kinds() -> list[str] | None:
        found = sorted(item["kind"] for item in (await client.get(path)).json())
        return found if len(found) == 3 else None

    assert await eventually(kinds) == ["deal.closed", "lead.contacted", "lead.created"]


async def test_a_deal_that_overtakes_its_lead_is_kept(system_factory: SystemFactory) -> None:
    system = await system_factory(only=["crm-sync"])
    await system.publish(DealClosed(lead_id="L9", won=True, amount=Decimal(500), closed_at=NOW))
    await system.publish(lead("L9", email="late@acme.example"))
    client = system["crm-sync"]

    async def paying() -> bool:
        return bool((await lookup(client, email="late@acme.example"))["is_customer"])

    await eventually(paying)


async def test_lookup_needs_an_email_or_a_phone(system_factory: SystemFactory) -> None:
    system = await system_factory(only=["crm-sync"])
    answer = await system["crm-sync"].get("/v1/customers/lookup")
    assert answer.status_code == 422
    assert "email, phone" in answer.text
    assert (await system["crm-sync"].get("/v1/customers/nope")).status_code == 404


async def test_concurrent_leads_of_one_person_make_one_customer_on_postgres(
    pg_database,
) -> None:
    """Two consumers handle six leads with the same email at once: the second writer of a
    person waits for the first (advisory lock on the email) and links its lead to it."""
    from crm_sync.app import SERVICE

    url = await pg_database("crm-sync")
    bus, clock = MemoryBus(partitions=3), ManualClock(NOW)
    settings = Settings(database_url=url, contract_path=TEST_CONTRACT, relay_poll_seconds=0.05)
    apps = [create_app(SERVICE, settings, clock=clock, bus=bus) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        events = [envelope(lead(f"P{i}"), source="test", time=NOW) for i in range(6)]
        await asyncio.gather(*(bus.publish(e.topic, e.subject, e.to_json()) for e in events))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=apps[0]), base_url="http://crm"
        ) as client:

            async def all_linked() -> bool:
                customer = (await lookup(client, email="ana@acme.example"))["customer"]
                return bool(customer) and len(customer["lead_ids"]) == 6  # type: ignore[index]

            await eventually(all_linked, 20)
    await bus.stop()
