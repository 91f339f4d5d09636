"""Scale-out: two instances of scoring and two of sla-monitor, each pair one consumer group
over the same database. They split the partitions (each instance handles some of the
events); killing one (SIGKILL, no goodbye) hands its partitions to the other, and its
deadlines too — the deadlines live in the shared store, and both watches race on them
with a conditional update — so no lead is lost and no breach is lost or repeated."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.faults import (
    SERVICES,
    Auditor,
    counter,
    every_breach_once,
    every_lead_everywhere_once,
    post_leads,
)
from tests.fixtures.distributed import DistributedFactory, DistributedSystem
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "seconds.yaml"
TOPIC = {"scoring": "lead.created", "sla-monitor": "lead.scored"}


async def consumed(system: DistributedSystem, instance: str, service: str) -> float:
    return await counter(system[instance], "leadpact_events_consumed_total", topic=TOPIC[service])


async def test_two_instances_split_partitions_and_take_over_when_one_dies(
    distributed_factory: DistributedFactory,
) -> None:
    system = await distributed_factory(
        CONTRACT, only=SERVICES, replicas={"scoring": 2, "sla-monitor": 2}
    )
    async with Auditor(system.bus_url, ["sla.breached"]) as auditor:
        first = await post_leads(system["intake"], 24, pause=0.02)
        await every_lead_everywhere_once(system, first)
        for service in TOPIC:
            shares = [await consumed(system, i, service) for i in (service, f"{service}-2")]
            # 3 partitions, 2 members: each got some; together each event once (or a
            # redelivery after a rebalance, which the inbox absorbs).
            assert all(s > 0 for s in shares), f"{service} did not split: {shares}"
            assert sum(shares) >= len(first), shares

        # Kill one instance of each while its deadlines (5 s) are still open.
        for victim in ("scoring-2", "sla-monitor-2"):
            process = system.services[victim].process
            assert process is not None
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        survivors = {s: await consumed(system, s, s) for s in TOPIC}
        second = await post_leads(system["intake"], 12, pause=0.02)
        leads = first + second
        await every_lead_everywhere_once(system, leads, timeout=90)

        async def survivors_took_over() -> bool:
            took = [await consumed(system, s, s) - survivors[s] for s in TOPIC]
            return all(n >= len(second) for n in took)

        await eventually(survivors_took_over, 30, interval=0.3)
        await every_breach_once(system, auditor, [lead["lead_id"] for lead in leads], timeout=90)
