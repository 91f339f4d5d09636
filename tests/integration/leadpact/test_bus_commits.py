"""When the Kafka bus commits offsets: once per fetch round, for every partition the round
handled, and what an interrupted round handled when the member stops.

One commit per round (not one per partition's batch) cut the OffsetCommit requests each lead
caused (notes/issue-9-distributed.md); these tests hold what must not change with it: an
offset is committed only for handled records, every handled record's offset is committed,
and a member stopped mid-round leaves only the unfinished records to the next member.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from leadpact.bus import EventBus, Message, bus_from_url
from leadpact.settings import Settings
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka]

PARTITIONS = 3
KEYS = [f"lead-{i}" for i in range(12)]  # murmur2 spreads these over all three partitions


@pytest.fixture
async def bus(tansu: Any) -> AsyncIterator[EventBus]:
    the_bus = bus_from_url(
        Settings(
            bus_url=tansu.url,
            kafka_partitions=PARTITIONS,
            kafka_enable_idempotence=False,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
        )
    )
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset of each partition of ``topic``, as the broker has it
    (asked by a consumer of the group that does not join it)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: await reader.committed(tp) for tp in tps}
    finally:
        await reader.stop()


async def test_every_partition_a_round_handled_is_committed_to_its_end(
    bus: EventBus, tansu: Any
) -> None:
    topic, group = name("t"), name("g")
    await bus.ensure_topics([topic])  # type: ignore[attr-defined]
    for key in KEYS:
        await bus.publish(topic, key, key.encode())
    seen: list[Message] = []

    async def handler(msg: Message) -> None:
        seen.append(msg)

    await bus.subscribe(group, [topic], handler)
    await eventually(lambda: len(seen) == len(KEYS), 20)
    ends: dict[int, int] = {}
    for msg in seen:
        ends[msg.partition] = max(ends.get(msg.partition, 0), msg.offset + 1)
    assert len(ends) == PARTITIONS, "the keys should cover every partition"
    bootstrap = tansu.url.removeprefix("kafka://")

    async def all_committed() -> bool:
        return await committed(bootstrap, group, topic) == ends

    await eventually(all_committed, 20, interval=0.2)


async def test_a_member_stopped_mid_round_leaves_only_the_unfinished_records(
    bus: EventBus,
) -> None:
    """The records of the round handled before the stop are committed by ``stop()`` (the
    round's own commit never came); only the stuck partition is read again."""
    topic, group = name("t"), name("g")
    await bus.ensure_topics([topic])  # type: ignore[attr-defined]
    for key in KEYS:
        await bus.publish(topic, key, key.encode())
    stuck_key = KEYS[0]
    stuck_partition = partition_of(stuck_key)
    others = {key for key in KEYS if partition_of(key) != stuck_partition}
    stuck, handled = asyncio.Event(), set()

    async def first_handler(msg: Message) -> None:
        if msg.key == stuck_key:
            stuck.set()
            await asyncio.Event().wait()  # never returns: the member is stopped here
        handled.add(msg.key)

    first = await bus.subscribe(group, [topic], first_handler)
    await asyncio.wait_for(stuck.wait(), 20)
    await eventually(lambda: others <= handled, 20)
    await first.stop()

    again: list[str] = []

    async def second_handler(msg: Message) -> None:
        again.append(msg.key)

    await bus.subscribe(group, [topic], second_handler)
    # One more record on every partition: anything read again comes before it (order per
    # partition), so once all three are here nothing else is on its way.
    for key in marker_keys():
        await bus.publish(topic, key, b"marker")
    await eventually(lambda: set(marker_keys()) <= set(again), 30)
    assert stuck_key in again
    assert not others & set(again), "records handled before the stop came again"


def partition_of(key: str) -> int:
    """The partition the producer's default (murmur2) partitioner picks for ``key``."""
    every = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key.encode(), every, every))


def marker_keys() -> list[str]:
    """One key per partition."""
    by_partition: dict[int, str] = {}
    for i in range(100):
        by_partition.setdefault(partition_of(f"marker-{i}"), f"marker-{i}")
    return [by_partition[p] for p in range(PARTITIONS)]
