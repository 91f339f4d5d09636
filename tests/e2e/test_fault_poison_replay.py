"""A poison event is parked in its dead-letter topic, and ``leadpact dlq replay`` brings it
back once the cause is fixed — handled once, by every consumer, however often replayed.

The cause: scoring's database refuses one lead (a trigger the test adds raises for it, as
a broken constraint or a bad deployment would), so scoring's handler keeps failing on that
event — not a storage outage, which is waited out — and it goes to ``lead.created.dlq``
while the partition moves on. The fix: the trigger is dropped. The replay goes through the
real CLI. crm-sync had handled the event the first time; the replay reaches it again and
its inbox makes that harmless. This test has a broker of its own, so that the dead-letter
topic holds only what it parks."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from leadpact.dlq import list_parked
from tests.e2e.faults import (
    SERVICES,
    a_new_person,
    connect,
    every_lead_everywhere_once,
    post_leads,
)
from tests.fixtures.distributed import DistributedFactory, DistributedSystem
from tests.fixtures.tansu import RestartableBroker
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "fast.yaml"

REFUSE = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.fields::text LIKE '%poison.%' THEN
    RAISE EXCEPTION 'refused by the test: %', NEW.lead_id;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON scoring_leads
  FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""
FIX = "DROP TRIGGER refuse_poison ON scoring_leads; DROP FUNCTION refuse_poison();"


async def leadpact_cli(system: DistributedSystem, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leadpact",
        *args,
        env={
            **system.services["intake"].env,
            "LEADPACT_BUS_URL": system.bus_url,
            "LEADPACT_KAFKA_ENABLE_IDEMPOTENCE": "false",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


async def scores_of(system: DistributedSystem, lead_id: str) -> int:
    async with connect(system, "scoring") as conn:
        return int(await conn.fetchval("SELECT count(*) FROM scores WHERE lead_id = $1", lead_id))


async def test_a_poison_event_is_parked_then_replayed_once_fixed(
    distributed_factory: DistributedFactory, own_tansu: RestartableBroker
) -> None:
    system = await distributed_factory(CONTRACT, broker=own_tansu, only=SERVICES)
    async with connect(system, "scoring") as conn:
        await conn.execute(REFUSE)

    poison: dict[str, Any] = {**a_new_person(), "email": "poison.1@acme-robotics.example"}
    answer = await system["intake"].post("/v1/leads", json=poison)
    assert answer.status_code == 202, answer.text
    poison["lead_id"] = answer.json()["lead_id"]
    healthy = await post_leads(system["intake"], 5, pause=0)
    await every_lead_everywhere_once(system, healthy)  # the partition did not block

    async def parked() -> list[Any]:
        found = await list_parked(own_tansu.bootstrap, "lead.created")
        return [p for p in found if p.key == poison["lead_id"]]

    found: list[Any] = await eventually(parked, 60, interval=0.5)
    assert len(found) == 1 and "refused by the test" in found[0].error, found
    listed = [
        json.loads(line)
        for line in (await leadpact_cli(system, "dlq", "list", "lead.created")).splitlines()
    ]
    assert [p["key"] for p in listed] == [poison["lead_id"]]
    assert await scores_of(system, poison["lead_id"]) == 0

    async with connect(system, "scoring") as conn:
        await conn.execute(FIX)
    out = await leadpact_cli(system, "dlq", "replay", "lead.created")
    assert "replayed 1 event" in out, out
    everyone = [*healthy, poison]
    await every_lead_everywhere_once(system, everyone)

    out = await leadpact_cli(system, "dlq", "replay", "lead.created")
    assert "replayed 0 event" in out, out  # a second replay sends nothing again
    await every_lead_everywhere_once(system, everyone)
    assert len(await parked()) == 1, "the replay did not park it again"
