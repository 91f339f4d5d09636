"""Scale-out: two instances of scoring and two of sla-monitor, each pair one consumer group
over the same database. They split the partitions (each instance handles some of the
events); killing one (SIGKILL, no goodbye) hands its partitions to the other, and its
deadlines too: a deadline records the lead.scored partition that armed it, each
sla-monitor watches the deadlines of the partitions it owns, and the new owner of a
partition loads its deadlines from the shared store (a conditional update keeps a breach
single during the rebalance) — so no lead is lost and no breach is lost or repeated."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.e2e.faults import (
    SERVICES,
    Auditor,
    connect,
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


# --- deadline ownership ---------------------------------------------------------------

SLA_TWINS = ("sla-monitor", "sla-monitor-2")


def breached_by(system: DistributedSystem, instance: str) -> list[str]:
    """The leads whose first-contact breach ``instance`` logged (one JSON line each)."""
    found = []
    for line in system.services[instance].log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("event") == "sla breached" and entry.get("clause") == "first_contact":
            found.append(entry["lead_id"])
    return found


async def owned_partitions(system: DistributedSystem, instance: str) -> set[int]:
    text = (await system[instance].get("/metrics")).text
    return {
        int(part)
        for part, value in re.findall(
            r'^leadpact_sla_deadline_partitions\{partition="(\d+)"\} ([0-9.e+-]+)$', text, re.M
        )
        if float(value) == 1.0
    }


async def deadline_rows(
    system: DistributedSystem, lead_ids: list[str]
) -> dict[str, tuple[int, str]]:
    """lead → (partition, status) of its first-contact deadline."""
    async with connect(system, "sla-monitor") as conn:
        rows = await conn.fetch(
            "SELECT lead_id, partition, status FROM sla_deadlines"
            " WHERE clause = 'first_contact' AND round = 0 AND lead_id = ANY($1)",
            lead_ids,
        )
    return {r["lead_id"]: (r["partition"], r["status"]) for r in rows}


async def test_each_instance_breaches_its_own_partitions_and_the_survivor_the_rest(
    distributed_factory: DistributedFactory, tmp_path: Path
) -> None:
    # 20 s to answer: long enough to kill an instance while its deadlines are open.
    contract = tmp_path / "twenty-seconds.yaml"
    contract.write_text(
        CONTRACT.read_text(encoding="utf-8").replace(
            "first_contact_within: 5s", "first_contact_within: 20s"
        ),
        encoding="utf-8",
    )
    system = await distributed_factory(
        contract, only=("intake", "scoring", "sla-monitor"), replicas={"sla-monitor": 2}
    )

    async def group_settled() -> dict[str, set[int]]:
        owned = {i: await owned_partitions(system, i) for i in SLA_TWINS}
        return owned if all(owned.values()) else {}

    owned = await eventually(group_settled, 30, interval=0.3)
    assert owned["sla-monitor"].isdisjoint(owned["sla-monitor-2"]), owned
    assert owned["sla-monitor"] | owned["sla-monitor-2"] == {0, 1, 2}, owned

    async with Auditor(system.bus_url, ["sla.breached"]) as auditor:
        # Both alive: each instance breaches exactly the deadlines of its partitions.
        first = [lead["lead_id"] for lead in await post_leads(system["intake"], 12, pause=0.02)]
        await every_breach_once(system, auditor, first, timeout=90)
        rows = await deadline_rows(system, first)
        assert sorted(rows) == sorted(first)
        assert {part for part, _ in rows.values()} <= {0, 1, 2}  # recorded, never NULL
        for instance in SLA_TWINS:
            mine = sorted(lead for lead, (part, _) in rows.items() if part in owned[instance])
            assert sorted(breached_by(system, instance)) == mine, instance
            assert await counter(
                system[instance], "leadpact_sla_breaches_total", clause="first_contact"
            ) == len(mine)

        # Kill the second instance while the next leads' deadlines are open.
        second: list[str] = []
        victim = owned["sla-monitor-2"]

        async def armed_on_both_sides() -> bool:
            second.extend(
                lead["lead_id"] for lead in await post_leads(system["intake"], 6, pause=0.02)
            )
            await eventually(lambda: _all_armed(system, second), 30, interval=0.2)
            parts = {part for part, _ in (await deadline_rows(system, second)).values()}
            return bool(parts & victim) and bool(parts - victim)

        await eventually(armed_on_both_sides, 60, interval=0)
        process = system.services["sla-monitor-2"].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        at_kill = await deadline_rows(system, second)
        handed_over = sorted(
            lead for lead, (part, status) in at_kill.items() if part in victim and status == "open"
        )
        assert handed_over, f"the victim breached its deadlines before the kill: {at_kill}"
        already = set(breached_by(system, "sla-monitor-2"))

        async def survivor_owns_all() -> bool:
            return await owned_partitions(system, "sla-monitor") == {0, 1, 2}

        await eventually(survivor_owns_all, 30, interval=0.3)
        await every_breach_once(system, auditor, first + second, timeout=90)
        survivor = breached_by(system, "sla-monitor")
        assert len(survivor) == len(set(survivor))  # nothing breached twice by it
        # The survivor breached the rest: its own and every deadline handed over to it.
        assert set(second) - already <= set(survivor)
        assert set(handed_over) <= set(survivor)
        assert await counter(
            system["sla-monitor"], "leadpact_sla_breaches_total", clause="first_contact"
        ) == len(survivor)


async def _all_armed(system: DistributedSystem, lead_ids: list[str]) -> bool:
    return len(await deadline_rows(system, lead_ids)) == len(lead_ids)
