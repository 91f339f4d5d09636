"""The embedded bus forgets what every reader is done with, and nothing a reader still needs:
a long ``make run`` must not keep every event ever published in memory."""

from __future__ import annotations

import asyncio

from leadpact.bus import Message
from leadpact.bus.memory import MemoryBus
from tests.fixtures.waiting import eventually

RETAIN = 5


async def publish(bus: MemoryBus, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await bus.publish("lead.created", "one-key", f"m{i}".encode())


async def test_a_topic_nobody_reads_keeps_only_its_recent_messages() -> None:
    bus = MemoryBus(partitions=1, retain=RETAIN)

    await publish(bus, 40)

    kept = bus.messages("lead.created")
    assert RETAIN <= len(kept) < 2 * RETAIN
    assert [m.value for m in kept[-RETAIN:]] == [f"m{i}".encode() for i in range(35, 40)]
    assert kept[-1].offset == 39  # offsets stay absolute


async def test_messages_a_slow_group_has_not_read_are_kept_and_delivered_in_order() -> None:
    bus = MemoryBus(partitions=1, retain=RETAIN)
    seen: list[bytes] = []
    release = asyncio.Event()

    async def slow(msg: Message) -> None:
        await release.wait()
        seen.append(msg.value)

    member = await bus.subscribe("scoring", ["lead.created"], slow)
    await publish(bus, 40)
    assert len(bus.messages("lead.created")) == 40  # the group is still at the first one

    release.set()
    await eventually(lambda: len(seen) == 40)
    assert seen == [f"m{i}".encode() for i in range(40)]

    await publish(bus, 1, start=40)  # the next publish drops what every group has read
    await eventually(lambda: len(seen) == 41)
    assert [m.offset for m in bus.messages("lead.created")] == list(range(40 - RETAIN + 1, 41))
    await member.stop()


async def test_a_group_that_joins_late_starts_at_the_oldest_kept_message() -> None:
    bus = MemoryBus(partitions=1, retain=RETAIN)
    await publish(bus, 40)
    oldest = bus.messages("lead.created")[0].offset
    seen: list[int] = []

    async def record(msg: Message) -> None:
        seen.append(msg.offset)

    member = await bus.subscribe("feedback", ["lead.created"], record)
    await eventually(lambda: seen and seen[-1] == 39)

    assert seen == list(range(oldest, 40))
    assert member.lag() == {("lead.created", 0): 0}
    await member.stop()
