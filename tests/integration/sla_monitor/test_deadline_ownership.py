"""Deadline ownership follows the consumer group: a deadline records the lead.scored
partition that armed it, and a watch only breaches the deadlines of the partitions its
instance owns (plus those armed before partitions were recorded). On real PostgreSQL with
two watches sharing one store, as two replicas do; and embedded, where the only member
owns every partition."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from leadpact.clock import ManualClock
from leadpact.db import Database
from leadpact.events import LeadScored
from leadpact.messaging import UnitOfWork
from leadpact.migrations import upgrade_async
from sla_monitor import store
from sla_monitor.app import SERVICE
from sla_monitor.metrics import SlaMetrics
from sla_monitor.watch import DeadlineWatch
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.sla_monitor.test_routing import ROUTING_CONTRACT, new_mql, owner_of

SCORED = "lead.scored"
UNPARTITIONED = -1  # stands for NULL in the maps below


class Store:
    def __init__(self, db: Database, clock: ManualClock) -> None:
        self.db, self.clock = db, clock

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, self.clock, "sla-monitor")

    async def arm(self, partition: int | None, minutes: int = 10, **extra: object) -> str:
        lead_id = str(extra.pop("lead_id", uuid.uuid4()))
        now = self.clock.now()
        async with self.uow() as uow:
            await store.arm(
                uow.session,
                {
                    "lead_id": lead_id,
                    "clause": "first_contact",
                    "started_at": now,
                    "armed_at": now,
                    "due_at": now + timedelta(minutes=minutes),
                    "at_risk_at": None,
                    "owner": None,
                    "source": "meta",
                    "contract_version": "test-fast.1",
                    "partition": partition,
                    **extra,
                },
            )
            await uow.commit()
        return lead_id

    async def status(self) -> dict[str, str]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(store.DeadlineRow.lead_id, store.DeadlineRow.status)
            )
            return {lead_id: status for lead_id, status in rows.all()}

    async def partitions(self) -> dict[tuple[str, int], int]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(
                    store.DeadlineRow.lead_id, store.DeadlineRow.round, store.DeadlineRow.partition
                )
            )
            return {
                (lead_id, rnd): UNPARTITIONED if part is None else part
                for lead_id, rnd, part in rows.all()
            }


@pytest.fixture
async def shared_store(
    pg_database: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Store]:
    url = await pg_database("sla_monitor")
    await upgrade_async(url, Path(SERVICE.migrations))
    db = Database(url)
    try:
        yield Store(db, ManualClock())
    finally:
        await db.dispose()


def a_watch(deadlines: Store, registry: CollectorRegistry) -> DeadlineWatch:
    return DeadlineWatch(deadlines.uow, deadlines.clock, SlaMetrics(registry), partitions=set())


def breaches_counted(registry: CollectorRegistry) -> float:
    return (
        registry.get_sample_value(
            "leadpact_sla_breaches_total",
            {"clause": "first_contact", "source": "meta", "team": "sales"},
        )
        or 0.0
    )


async def test_each_watch_breaches_only_the_deadlines_of_its_partitions(
    shared_store: Store,
) -> None:
    by_partition = {p: [await shared_store.arm(p) for _ in range(3)] for p in (0, 1, 2)}
    legacy = await shared_store.arm(None)  # armed before partitions were recorded
    registries = [CollectorRegistry(), CollectorRegistry()]
    first, second = (a_watch(shared_store, r) for r in registries)
    # The other topics' partitions do not give deadlines: only lead.scored owns them.
    await first.partitions_assigned({(SCORED, 0), (SCORED, 1), ("lead.contacted", 2)})
    await second.partitions_assigned({(SCORED, 2), ("lead.contacted", 0)})
    assert first.partitions == {0, 1} and second.partitions == {2}

    shared_store.clock.advance(timedelta(minutes=11))
    await first.breach_due(shared_store.clock.now())
    status = await shared_store.status()
    assert {lead: status[lead] for lead in by_partition[2]} == dict.fromkeys(
        by_partition[2], store.OPEN
    ), "the first watch breached a deadline of a partition it does not own"
    assert all(status[lead] == store.BREACHED for lead in by_partition[0] + by_partition[1])
    assert status[legacy] == store.BREACHED  # unpartitioned: whoever comes first
    assert breaches_counted(registries[0]) == 7

    await second.breach_due(shared_store.clock.now())
    status = await shared_store.status()
    assert all(status[lead] == store.BREACHED for lead in by_partition[2])
    assert breaches_counted(registries[1]) == 3  # its own three, nothing twice


async def test_assigned_partition_is_loaded_and_its_due_deadlines_breached_at_once(
    shared_store: Store,
) -> None:
    registry = CollectorRegistry()
    watch = a_watch(shared_store, registry)
    await watch.partitions_assigned({(SCORED, 0)})
    theirs = [await shared_store.arm(1, minutes=m) for m in (5, 10, 30)]
    await watch.start()
    try:
        shared_store.clock.advance(timedelta(minutes=12))  # two of partition 1 now due
        # The watch woke for the time that passed and scanned: partition 1 is not its own.
        assert await watch.breach_due(shared_store.clock.now()) == 0
        assert set((await shared_store.status()).values()) == {store.OPEN}

        # Partition 1 is handed over (its owner died): due ones go at once, without the
        # clock moving; the third is now watched and goes when its time comes.
        await watch.partitions_assigned({(SCORED, 1)})

        async def handed_over_due_breached() -> bool:
            status = await shared_store.status()
            return [status[lead] for lead in theirs] == [
                store.BREACHED,
                store.BREACHED,
                store.OPEN,
            ]

        await eventually(handed_over_due_breached)
        assert (
            registry.get_sample_value("leadpact_sla_deadline_partitions", {"partition": "1"}) == 1.0
        )

        # Revoked (a rebalance moved it on): its deadlines are forgotten.
        await watch.partitions_revoked({(SCORED, 1)})
        assert watch.partitions == {0}
        assert (
            registry.get_sample_value("leadpact_sla_deadline_partitions", {"partition": "1"})
            is None
        )
        shared_store.clock.advance(timedelta(minutes=20))
        assert await watch.breach_due(shared_store.clock.now()) == 0
        assert (await shared_store.status())[theirs[2]] == store.OPEN
    finally:
        await watch.stop()
    assert breaches_counted(registry) == 2


async def test_a_later_round_takes_the_partition_of_the_leads_deadline(
    shared_store: Store,
) -> None:
    lead_id = await shared_store.arm(2)
    # An escalation's next round is armed by the watch, outside any lead.scored delivery.
    await shared_store.arm(None, lead_id=lead_id, round=1)
    fresh = await shared_store.arm(None)  # nothing to inherit from: watched by everyone
    partitions = await shared_store.partitions()
    assert partitions[(lead_id, 0)] == partitions[(lead_id, 1)] == 2
    assert partitions[(fresh, 0)] == UNPARTITIONED


async def test_embedded_member_owns_every_partition_and_arming_records_it(
    system_factory: SystemFactory,
) -> None:
    system = await system_factory(only=["sla-monitor"])
    ctx = system.apps["sla-monitor"].state.ctx
    watch: DeadlineWatch = ctx.extras["deadline_watch"]
    assert watch.partitions == set(range(system.bus.partitions))

    leads = [str(uuid.uuid4()) for _ in range(6)]
    for lead_id in leads:
        await system.publish(
            LeadScored(
                lead_id=lead_id,
                points=60,
                tier="mql",
                source="meta",
                scored_at=system.clock.now(),
            )
        )
    delivered = {m.key: m.partition for m in system.bus.messages(SCORED)}

    async def armed() -> dict[str, set[int | None]]:
        async with ctx.uow() as uow:
            rows = await uow.session.execute(
                select(store.DeadlineRow.lead_id, store.DeadlineRow.partition)
            )
            found: dict[str, set[int | None]] = {}
            for lead_id, part in rows.all():
                found.setdefault(lead_id, set()).add(part)
            return found if len(found) == len(leads) else {}

    found = await eventually(armed)
    # Every clause of a lead carries the partition its lead.scored was delivered on.
    assert found == {lead_id: {delivered[lead_id]} for lead_id in leads}
    assert len({delivered[lead_id] for lead_id in leads}) > 1  # not all on one partition


async def test_breach_names_the_owning_team_and_the_next_round_keeps_the_partition(
    system_factory: SystemFactory,
) -> None:
    system = await system_factory(only=["sla-monitor"], contract=ROUTING_CONTRACT)
    lead_id = await new_mql(system, probability=0.95)  # the "hot" rule: team enterprise
    assert (await owner_of(system, lead_id))["owner"] == "lucia"
    system.clock.advance(timedelta(minutes=10, seconds=1))

    def breached() -> list[str | None]:
        return [
            e.data.team
            for e in system.events("sla.breached")
            if e.data.lead_id == lead_id and e.data.clause == "first_contact"
        ]

    assert await eventually(breached) == ["enterprise"]
    registry = system.apps["sla-monitor"].state.ctx.metrics.registry
    teams = {
        s.labels["team"]: s.value
        for metric in registry.collect()
        if metric.name == "leadpact_sla_breaches"
        for s in metric.samples
        if s.name == "leadpact_sla_breaches_total"
    }
    assert teams == {"enterprise": 1.0}

    # The escalation handed the lead to the next member with a fresh round: armed by the
    # watch, outside any lead.scored delivery, it keeps the lead's partition.
    ctx = system.apps["sla-monitor"].state.ctx

    async def rounds() -> dict[int, int | None]:
        async with ctx.uow() as uow:
            rows = await uow.session.execute(
                select(store.DeadlineRow.round, store.DeadlineRow.partition).where(
                    store.DeadlineRow.lead_id == lead_id,
                    store.DeadlineRow.clause == "first_contact",
                )
            )
            found = {rnd: part for rnd, part in rows.all()}
            return found if len(found) == 2 else {}

    found = await eventually(rounds)
    delivered = {m.key: m.partition for m in system.bus.messages(SCORED)}
    assert found == {0: delivered[lead_id], 1: delivered[lead_id]}


async def test_breach_log_and_compliance_answer_by_the_owning_team(
    system_factory: SystemFactory,
) -> None:
    system = await system_factory(only=["sla-monitor"], contract=ROUTING_CONTRACT)
    since = system.clock.now().isoformat()
    lead_id = await new_mql(system, probability=0.95)  # the "hot" rule: team enterprise
    system.clock.advance(timedelta(minutes=10, seconds=1))
    await eventually(
        lambda: [e for e in system.events("sla.breached") if e.data.lead_id == lead_id]
    )
    api = system["sla-monitor"]

    held = (await api.get("/v1/breaches", params={"team": "enterprise"})).json()["breaches"]
    assert [(b["lead_id"], b["clause"], b["team"]) for b in held] == [
        (lead_id, "first_contact", "enterprise")
    ]
    assert (await api.get("/v1/breaches", params={"team": "sales"})).json()["breaches"] == []

    lines = (await api.get("/v1/compliance", params={"since": since, "team": "enterprise"})).json()[
        "clauses"
    ]
    first_contact = next(line for line in lines if line["clause"] == "first_contact")
    assert (first_contact["team"], first_contact["breached"], first_contact["compliance"]) == (
        "enterprise",
        1,
        0.0,
    )
