"""The same events delivered twice: the test reads every event that went over the topics and
publishes it again (same bytes, same event id — what a producer retry or a relay that died
before deleting its outbox rows does), twice over. Then a second kind of duplicate: the same
``lead.created`` fact under a new event id, which only natural keys can catch."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from leadpact.bus import Message
from tests.e2e.faults import (
    SERVICES,
    Auditor,
    counter,
    every_breach_once,
    every_lead_everywhere_once,
    post_leads,
)
from tests.fixtures.distributed import DistributedFactory
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "seconds.yaml"
# Who consumes what, among the services the fault tests start.
CONSUMERS = {"lead.created": ["scoring", "crm-sync"], "lead.scored": ["sla-monitor"]}


def lead_of(msg: Message) -> str | None:
    """The lead an event on the topic is about (None for what is not an event of ours)."""
    try:
        data = json.loads(msg.value).get("data")
    except ValueError:
        return None
    return data.get("lead_id") if isinstance(data, dict) else None


async def test_events_delivered_twice_have_their_effect_once(
    distributed_factory: DistributedFactory,
) -> None:
    system = await distributed_factory(CONTRACT, only=SERVICES)
    topics = list(CONSUMERS)
    async with Auditor(system.bus_url, [*topics, "sla.breached"]) as auditor:
        leads = await post_leads(system["intake"], 8, pause=0)
        ids = [lead["lead_id"] for lead in leads]
        await every_lead_everywhere_once(system, leads)
        await every_breach_once(system, auditor, ids)

        async def seen_all() -> bool:
            return all(len(auditor.raw[t]) >= len(leads) for t in topics)

        await eventually(seen_all, 30)
        consumers = {
            (topic, service)
            for topic, services in CONSUMERS.items()
            for service in services
            if service in system.clients
        }

        async def handled(topic: str, service: str) -> tuple[float, float]:
            """(events the service got through, events it dead-lettered) on ``topic``."""
            done = await counter(system[service], "leadpact_events_consumed_total", topic=topic)
            dead = await counter(
                system[service], "leadpact_events_dead_lettered_total", topic=topic
            )
            return done + dead, dead

        before = {(t, s): await handled(t, s) for t, s in consumers}
        # Only this test's leads: the auditor reads the session broker's topics from the
        # start, earlier tests' events included. Republishing those made this test's
        # sla-monitor (a fresh database) arm and breach earlier tests' leads a second time,
        # under new event ids — the cross-test double ``sla.breached`` (notes/issue-9.md).
        ours = set(ids)
        originals = {t: [m for m in auditor.raw[t] if lead_of(m) in ours] for t in topics}
        assert all(len(originals[t]) >= len(leads) for t in topics)
        for _ in range(2):
            for topic, messages in originals.items():
                for msg in messages:
                    await auditor.bus.publish(topic, msg.key, msg.value)

        async def all_handled() -> bool:
            for t, s in consumers:
                if (await handled(t, s))[0] - before[(t, s)][0] < 2 * len(originals[t]):
                    return False
            return True

        await eventually(all_handled, 60, interval=0.3)
        for t, s in consumers:  # a duplicate is skipped, never parked as a failure
            dead = (await handled(t, s))[1] - before[(t, s)][1]
            assert dead == 0, f"{s} dead-lettered {dead} duplicate(s) of {t}"
        await every_lead_everywhere_once(system, leads)
        await every_breach_once(system, auditor, ids)

        # The same fact under a new event id: the inbox cannot tell; natural keys must.
        consumed = {
            s: await counter(system[s], "leadpact_events_consumed_total", topic="lead.created")
            for s in CONSUMERS["lead.created"]
            if s in system.clients
        }
        for msg in originals["lead.created"]:
            event = json.loads(msg.value)
            event["id"] = str(uuid.uuid4())
            await auditor.bus.publish("lead.created", msg.key, json.dumps(event).encode())

        async def all_consumed() -> bool:
            for s, n in consumed.items():
                now = await counter(
                    system[s], "leadpact_events_consumed_total", topic="lead.created"
                )
                if now - n < len(originals["lead.created"]):
                    return False
            return True

        await eventually(all_consumed, 60, interval=0.3)
        await every_lead_everywhere_once(system, leads)
        await every_breach_once(system, auditor, ids)
