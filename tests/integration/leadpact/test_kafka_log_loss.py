"""A broker that loses its log must not make a consumer skip what the new log holds.

tansu keeps everything in memory: restarted, it has forgotten every topic, message and
committed offset, and recreates a topic from offset 0 (Apache Kafka does the same for a
topic deleted and recreated, and loses a tail on an unclean leader election). A batch that
was being handled across the restart would commit its old offsets (say 3) on the new log,
and whoever reads that partition next resumes at 3: offsets 0-2 of the new log skipped.
``KafkaSubscription`` fences commits across a rebalance and checks positions against the
log end; see ``_fence`` and ``_check_positions`` in leadpact/bus/kafka.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from leadpact.bus import EventBus, Message, bus_from_url
from leadpact.settings import Settings
from tests.fixtures.tansu import AUTO_CREATED_PARTITIONS, RestartableBroker
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka]

TOPIC, GROUP = "lead.created", "log-loss"


def a_bus(broker: RestartableBroker) -> EventBus:
    return bus_from_url(
        Settings(
            bus_url=broker.url,
            kafka_partitions=AUTO_CREATED_PARTITIONS,  # see tests/fixtures/tansu.py
            kafka_enable_idempotence=False,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
            consumer_retries=1,
        )
    )


async def publish(bus: EventBus, prefix: str, count: int) -> list[str]:
    """``count`` messages ``<prefix>-<i>``, keyed over as many leads (all partitions)."""
    values = [f"{prefix}-{i}" for i in range(count)]
    for i, value in enumerate(values):
        await bus.publish(TOPIC, f"lead-{i}", value.encode())
    return values


@pytest.fixture
async def buses(own_tansu: RestartableBroker) -> AsyncIterator[list[EventBus]]:
    made: list[EventBus] = []
    yield made
    for bus in made:
        await bus.stop()


async def test_no_message_of_the_new_log_is_skipped_after_the_broker_lost_its_log(
    own_tansu: RestartableBroker, buses: list[EventBus]
) -> None:
    seen: list[str] = []
    gate = asyncio.Event()  # holds the batch that is in flight when the broker goes
    in_flight: list[str] = []
    assignments: list[set[tuple[str, int]]] = []

    async def handler(msg: Message) -> None:
        value = msg.value.decode()
        if value.startswith("in-flight"):
            in_flight.append(value)
            await gate.wait()
        seen.append(value)

    async def assigned(partitions: set[tuple[str, int]]) -> None:
        assignments.append(partitions)

    first = a_bus(own_tansu)
    buses.append(first)
    await first.start()
    member = await first.subscribe(GROUP, [TOPIC], handler, on_assigned=assigned)

    # Read and committed on the old broker.
    await publish(first, "before", 8)
    await eventually(lambda: len(seen) == 8, 30)
    # A batch being handled when the broker goes: its offsets belong to the old log.
    await publish(first, "in-flight", 8)
    await eventually(lambda: in_flight, 30)

    rejoins = len(assignments)
    own_tansu.stop()
    own_tansu.start()
    # The member rejoins the restarted broker (which forgot it) while the batch is held...
    await eventually(lambda: len(assignments) > rejoins, 60)
    gate.set()  # ...then the batch finishes and would commit offsets of the old log.
    await eventually(lambda: sum(v.startswith("in-flight") for v in seen) == 8, 60)

    # A second member joins: every partition is handed out again from the broker's
    # committed offsets (as after any rebalance), then the new log fills up.
    second = a_bus(own_tansu)
    buses.append(second)
    await second.start()
    other = await second.subscribe(GROUP, [TOPIC], handler)
    await eventually(lambda: other.assignment() and len(member.assignment()) < 4, 60)
    after = await publish(first, "after", 24)

    try:
        await eventually(lambda: set(after) <= set(seen), 60, interval=0.2)
    except AssertionError:
        skipped = sorted(set(after) - set(seen), key=lambda v: int(v.split("-")[1]))
        raise AssertionError(f"{len(skipped)} of {len(after)} never delivered: {skipped}") from None


async def test_a_batch_handled_across_the_loss_commits_nothing_on_the_new_log(
    own_tansu: RestartableBroker, buses: list[EventBus]
) -> None:
    """The member that was handling a batch when the broker went away stops before it reads
    the new log; its successor resumes from the broker's committed offsets, which must not
    be that batch's (they would lie inside the new log, so nothing else could tell)."""
    gate = asyncio.Event()
    in_flight: list[str] = []
    handled: list[str] = []
    on_new_log = asyncio.Event()
    assignments: list[set[tuple[str, int]]] = []

    async def leaving(msg: Message) -> None:
        value = msg.value.decode()
        if value.startswith("in-flight"):
            in_flight.append(value)
            await gate.wait()
        elif value.startswith("after"):
            on_new_log.set()
            await asyncio.Event().wait()  # goes away before handling the new log
        handled.append(value)

    async def assigned(partitions: set[tuple[str, int]]) -> None:
        assignments.append(partitions)

    first = a_bus(own_tansu)
    buses.append(first)
    await first.start()
    await first.subscribe(GROUP, [TOPIC], leaving, on_assigned=assigned)
    await publish(first, "before", 8)
    await eventually(lambda: len(handled) == 8, 30)
    await publish(first, "in-flight", 8)
    await eventually(lambda: in_flight, 30)

    rejoins = len(assignments)
    own_tansu.stop()
    own_tansu.start()
    await eventually(lambda: len(assignments) > rejoins, 60)
    after = await publish(first, "after", 24)  # past the old batch's offsets
    gate.set()
    await asyncio.wait_for(on_new_log.wait(), 60)  # the old batch is done (and committed?)
    await first.stop()

    second, got = a_bus(own_tansu), Collector()
    buses.append(second)
    await second.start()
    await second.subscribe(GROUP, [TOPIC], got)
    try:
        await eventually(lambda: set(after) <= set(got.values), 60, interval=0.2)
    except AssertionError:
        skipped = sorted(set(after) - set(got.values), key=lambda v: int(v.split("-")[1]))
        raise AssertionError(f"{len(skipped)} of {len(after)} never delivered: {skipped}") from None


class Collector:
    def __init__(self) -> None:
        self.values: list[str] = []

    async def __call__(self, msg: Message) -> None:
        self.values.append(msg.value.decode())
