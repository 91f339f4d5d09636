"""Faults survived with nothing lost: every lead that got a 2xx reaches every service exactly
once, whatever happens to the broker or a consumer in between. Multi-process: each service
is its own process over tansu and PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadpact.bus import bus_from_url
from leadpact.settings import Settings
from tests.e2e.journeys import qualifying_lead
from tests.fixtures.distributed import DistributedFactory, DistributedSystem
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "fast.yaml"


async def post_leads(
    system: DistributedSystem, count: int, pause: float = 0.02
) -> list[dict[str, Any]]:
    """Post ``count`` leads one after another; keep those answered 202 (the promise)."""
    accepted = []
    for _ in range(count):
        lead = qualifying_lead()
        try:
            answer = await system["intake"].post("/v1/leads", json=lead)
        except httpx.HTTPError:
            continue
        if answer.status_code == 202:
            accepted.append({**lead, "lead_id": answer.json()["lead_id"]})
        await asyncio.sleep(pause)  # a steady trickle of leads, not a timing assertion
    return accepted


async def every_lead_everywhere_once(
    system: DistributedSystem, leads: list[dict[str, Any]], timeout: float = 60
) -> None:
    """Each accepted lead is stored by intake, linked once to one customer in crm-sync, and
    scored once by scoring (when those services run)."""

    missing: list[str] = []

    async def complete() -> bool:
        missing[:] = [await _missing(system, lead) for lead in leads]
        missing[:] = [m for m in missing if m]
        return not missing

    try:
        await eventually(complete, timeout, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{len(missing)} lead(s) incomplete: {missing[:5]}") from exc


async def _missing(system: DistributedSystem, lead: dict[str, Any]) -> str:
    """What is still missing for ``lead``, or '' when every service has it exactly once."""
    lead_id = lead["lead_id"]
    if (await system["intake"].get(f"/v1/leads/{lead_id}")).status_code != 200:
        return f"{lead_id}: not in intake"
    if "crm-sync" in system.clients:
        found = await system["crm-sync"].get(
            "/v1/customers/lookup", params={"email": lead["email"]}
        )
        customer = found.json().get("customer")
        if not customer or customer["lead_ids"] != [lead_id]:
            return f"{lead_id}: crm-sync has {customer and customer['lead_ids']}"
    scoring = system.clients.get("scoring")
    if scoring and (await scoring.get(f"/v1/scores/{lead_id}")).status_code != 200:
        return f"{lead_id}: not scored"
    return ""


async def test_a_frozen_broker_delays_leads_but_loses_none(
    distributed_factory: DistributedFactory, tansu: Any
) -> None:
    system = await distributed_factory(CONTRACT)
    before = await post_leads(system, 5)
    tansu.pause()
    try:
        during = await post_leads(system, 10)  # intake keeps accepting into its outbox
    finally:
        tansu.resume()
    after = await post_leads(system, 5)
    assert len(during) == 10, "intake must keep answering 202 while the broker is frozen"
    await every_lead_everywhere_once(system, before + during + after)


async def test_a_consumer_killed_mid_stream_loses_and_repeats_nothing(
    distributed_factory: DistributedFactory,
) -> None:
    system = await distributed_factory(CONTRACT)
    victim = system.services["crm-sync"]
    first = await post_leads(system, 10, pause=0)
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    second = await post_leads(system, 10, pause=0)
    victim.start()
    await victim.wait_ready()
    await every_lead_everywhere_once(system, first + second)


async def test_a_poison_event_is_parked_and_the_stream_goes_on(
    distributed_factory: DistributedFactory,
) -> None:
    system = await distributed_factory(CONTRACT)
    bus = bus_from_url(
        Settings(bus_url=system.bus_url, kafka_enable_idempotence=False, kafka_partitions=3)
    )
    await bus.start()
    try:
        await bus.publish("lead.created", "poison-1", b'{"type": "io.leadpact.lead.created.v1"}')
        leads = await post_leads(system, 3, pause=0)
        await every_lead_everywhere_once(system, leads)

        from leadpact.dlq import list_parked

        async def parked() -> list[Any]:
            found = await list_parked(system.bus_url.removeprefix("kafka://"), "lead.created")
            return [p for p in found if p.key == "poison-1"]

        poisoned = await eventually(parked, 30)
        assert all("data" in p.error or "source" in p.error for p in poisoned)
    finally:
        await bus.stop()
