"""One contract, two buses: the memory bus and Kafka (a real tansu broker) must behave alike
for everything the services rely on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from leadpact.bus import DeadLetter, EventBus, Message, bus_from_url
from leadpact.bus.base import ERROR_HEADER, ORIGIN_TOPIC_HEADER
from leadpact.settings import Settings
from tests.fixtures.waiting import eventually

PARTITIONS = 3


def bus_settings(request: pytest.FixtureRequest, **extra: Any) -> Settings:
    if request.param == "memory":
        return Settings(
            bus_url="memory://", kafka_partitions=PARTITIONS, consumer_retries=2, **extra
        )
    broker = request.getfixturevalue("tansu")
    return Settings(
        bus_url=broker.url,
        kafka_partitions=PARTITIONS,
        kafka_enable_idempotence=False,
        consumer_retries=2,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        **extra,
    )


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    the_bus = bus_from_url(bus_settings(request))
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


@pytest.fixture(params=["memory", "kafka"])
async def one_by_one_bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    """A bus with ``consumer_batch_max=1``: every message on its own, as before batches."""
    the_bus = bus_from_url(bus_settings(request, consumer_batch_max=1))
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


@pytest.fixture(params=["memory", "kafka"])
async def bus_of_three(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    the_bus = bus_from_url(bus_settings(request, consumer_batch_max=3))
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Collector:
    def __init__(self) -> None:
        self.seen: list[Message] = []

    async def __call__(self, msg: Message) -> None:
        self.seen.append(msg)

    def values(self) -> list[bytes]:
        return [m.value for m in self.seen]


async def test_a_published_message_reaches_a_subscriber(bus: EventBus) -> None:
    topic, got = name("t"), Collector()
    await bus.subscribe(name("g"), [topic], got)
    await bus.publish(topic, "lead-1", b"hello")
    await eventually(lambda: got.values() == [b"hello"], 20)
    assert got.seen[0].key == "lead-1"


async def test_one_key_stays_on_one_partition_in_order(bus: EventBus) -> None:
    topic, got = name("t"), Collector()
    await bus.subscribe(name("g"), [topic], got)
    for i in range(20):
        await bus.publish(topic, f"lead-{i % 4}", f"{i % 4}:{i}".encode())
    await eventually(lambda: len(got.seen) == 20, 20)
    for key in range(4):
        mine = [m for m in got.seen if m.key == f"lead-{key}"]
        assert len({m.partition for m in mine}) == 1
        assert [m.value for m in mine] == sorted((m.value for m in mine), key=_seq)


def _seq(value: bytes) -> int:
    return int(value.split(b":")[1])


async def test_publish_batch_keeps_order_per_key(bus: EventBus) -> None:
    topic, got = name("t"), Collector()
    await bus.subscribe(name("g"), [topic], got)
    await bus.publish_batch([(topic, "lead-a", f"a:{i}".encode()) for i in range(50)])
    await eventually(lambda: len(got.seen) == 50, 20)
    assert [_seq(v) for v in got.values()] == list(range(50))


async def test_every_group_gets_every_message(bus: EventBus) -> None:
    topic, first, second = name("t"), Collector(), Collector()
    await bus.subscribe(name("g"), [topic], first)
    await bus.subscribe(name("g"), [topic], second)
    for i in range(6):
        await bus.publish(topic, f"k{i}", b"x%d" % i)
    await eventually(lambda: len(first.seen) == 6 and len(second.seen) == 6, 20)


async def test_members_of_one_group_split_the_partitions(bus: EventBus) -> None:
    topic, group, a, b = name("t"), name("g"), Collector(), Collector()
    sub_a = await bus.subscribe(group, [topic], a)
    sub_b = await bus.subscribe(group, [topic], b)
    await eventually(
        lambda: (
            len(sub_a.assignment()) + len(sub_b.assignment()) == PARTITIONS
            and sub_a.assignment().isdisjoint(sub_b.assignment())
        ),
        30,
    )
    for i in range(30):
        await bus.publish(topic, f"k{i}", b"%d" % i)
    await eventually(lambda: len(a.seen) + len(b.seen) == 30, 30)
    assert sorted(a.values() + b.values()) == sorted(b"%d" % i for i in range(30))


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_does_not_block(
    bus: EventBus,
) -> None:
    topic, got, dead = name("t"), Collector(), Collector()

    async def handler(msg: Message) -> None:
        if msg.value == b"poison":
            raise DeadLetter("data.email: not an email")
        await got(msg)

    await bus.subscribe(name("g"), [topic], handler)
    await bus.subscribe(name("g"), [topic + ".dlq"], dead)
    await bus.publish(topic, "lead-1", b"poison")
    await bus.publish(topic, "lead-1", b"fine")
    await eventually(lambda: got.values() == [b"fine"] and len(dead.seen) == 1, 20)
    assert dead.seen[0].value == b"poison"
    assert dead.seen[0].headers[ERROR_HEADER] == "DeadLetter: data.email: not an email"
    assert dead.seen[0].headers[ORIGIN_TOPIC_HEADER] == topic


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_retries(
    bus: EventBus,
) -> None:
    topic, dead, attempts = name("t"), Collector(), []

    async def broken(msg: Message) -> None:
        attempts.append(msg.offset)
        raise RuntimeError("boom")

    await bus.subscribe(name("g"), [topic], broken)
    await bus.subscribe(name("g"), [topic + ".dlq"], dead)
    await bus.publish(topic, "lead-1", b"x")
    await eventually(lambda: len(dead.seen) == 1, 20)
    assert len(attempts) == 2  # consumer_retries
    assert "RuntimeError: boom" in dead.seen[0].headers[ERROR_HEADER]


async def test_a_transient_failure_is_retried_not_dead_lettered(bus: EventBus) -> None:
    topic, got, dead, failures = name("t"), Collector(), Collector(), [1]

    async def flaky(msg: Message) -> None:
        if failures:
            failures.pop()
            raise ConnectionError("database restarting")
        await got(msg)

    await bus.subscribe(name("g"), [topic], flaky)
    await bus.subscribe(name("g"), [topic + ".dlq"], dead)
    await bus.publish(topic, "lead-1", b"x")
    await eventually(lambda: got.values() == [b"x"], 20)
    assert dead.seen == []


async def test_an_unfinished_message_is_redelivered_to_the_next_member(bus: EventBus) -> None:
    """The offset moves only after the handler returns: a member stopped mid-handler leaves
    the message to whoever takes the partition next."""
    topic, group = name("t"), name("g")
    entered = asyncio.Event()

    async def stuck(msg: Message) -> None:
        entered.set()
        await asyncio.Event().wait()

    first = await bus.subscribe(group, [topic], stuck)
    await bus.publish(topic, "lead-1", b"work")
    await asyncio.wait_for(entered.wait(), 20)
    await first.stop()

    got = Collector()
    await bus.subscribe(group, [topic], got)
    await eventually(lambda: got.values() == [b"work"], 30)


async def test_handled_messages_are_not_redelivered_to_the_next_member(bus: EventBus) -> None:
    topic, group, first = name("t"), name("g"), Collector()
    sub = await bus.subscribe(group, [topic], first)
    await bus.publish(topic, "lead-1", b"one")
    await eventually(lambda: first.values() == [b"one"], 20)
    await sub.stop()

    second: Any = Collector()
    await bus.subscribe(group, [topic], second)
    await bus.publish(topic, "lead-1", b"two")
    await eventually(lambda: second.values() == [b"two"], 30)


async def test_lag_counts_what_the_member_has_not_handled_yet(bus: EventBus) -> None:
    topic, release = name("t"), asyncio.Event()

    async def slow(msg: Message) -> None:
        await release.wait()

    member = await bus.subscribe(name("g"), [topic], slow)
    for i in range(5):
        await bus.publish(topic, "one-lead", str(i).encode())
    await eventually(lambda: sum(member.lag().values()) == 5, 20)
    release.set()
    await eventually(lambda: sum(member.lag().values()) == 0, 20)


class BatchCollector(Collector):
    """A batch handler that is all or nothing, as the event dispatcher: a batch holding the
    poison raises having kept nothing; on its own the poison is dead-lettered."""

    def __init__(self, poison: bytes | None = None) -> None:
        super().__init__()
        self.poison = poison
        self.batches: list[list[bytes]] = []
        self.singles: list[bytes] = []

    async def __call__(self, msg: Message) -> None:
        self.singles.append(msg.value)
        if msg.value == self.poison:
            raise DeadLetter("poison")
        self.seen.append(msg)

    async def handle_batch(self, msgs: Sequence[Message]) -> None:
        self.batches.append([m.value for m in msgs])
        if any(m.value == self.poison for m in msgs):
            raise RuntimeError("a poison message in the batch")
        self.seen.extend(msgs)


class RoundCollector(BatchCollector):
    """:class:`BatchCollector` that also takes a fetch round of several partitions at once,
    all or nothing like the event dispatcher (a bus may or may not hand rounds over)."""

    def __init__(self, poison: bytes | None = None) -> None:
        super().__init__(poison)
        self.rounds: list[list[list[bytes]]] = []

    async def handle_round(self, batches: Sequence[Sequence[Message]]) -> None:
        self.rounds.append([[m.value for m in msgs] for msgs in batches])
        if any(m.value == self.poison for msgs in batches for m in msgs):
            raise RuntimeError("a poison message in the round")
        for msgs in batches:
            self.seen.extend(msgs)


def numbered(count: int) -> list[bytes]:
    return [b"m:%d" % i for i in range(count)]


async def test_what_a_partition_has_ready_comes_as_one_batch(bus: EventBus) -> None:
    topic, group, got, values = name("t"), name("g"), BatchCollector(), numbered(10)
    await bus.publish_batch([(topic, "lead-1", v) for v in values])
    member = await bus.subscribe(group, [topic], got)
    await eventually(lambda: got.values() == values, 20)
    assert any(len(batch) > 1 for batch in got.batches)
    assert len(got.batches) + len(got.singles) < len(values)
    await eventually(lambda: sum(member.lag().values()) == 0, 20)

    await member.stop()  # the batch's offset is committed: nothing comes again
    after = Collector()
    await bus.subscribe(group, [topic], after)
    await bus.publish(topic, "lead-1", b"after")
    await eventually(lambda: after.values() == [b"after"], 30)


async def test_a_poison_message_in_a_batch_is_isolated_and_the_others_handled_once(
    bus: EventBus,
) -> None:
    topic, group, values = name("t"), name("g"), numbered(10)
    got, dead = BatchCollector(poison=b"m:5"), Collector()
    await bus.publish_batch([(topic, "lead-1", v) for v in values])
    member = await bus.subscribe(group, [topic], got)
    await bus.subscribe(name("g"), [topic + ".dlq"], dead)
    fine = [v for v in values if v != b"m:5"]
    await eventually(lambda: got.values() == fine and len(dead.seen) == 1, 20)
    assert any(b"m:5" in batch and len(batch) > 1 for batch in got.batches)
    assert dead.seen[0].value == b"m:5"
    assert dead.seen[0].headers[ERROR_HEADER] == "DeadLetter: poison"
    assert dead.seen[0].headers[ORIGIN_TOPIC_HEADER] == topic
    await eventually(lambda: sum(member.lag().values()) == 0, 20)

    await member.stop()  # offsets are past every message of the batch, the poison too
    after = Collector()
    await bus.subscribe(group, [topic], after)
    await bus.publish(topic, "lead-1", b"after")
    await eventually(lambda: after.values() == [b"after"], 30)
    assert got.values() == fine
    assert len(dead.seen) == 1


async def test_batch_max_one_hands_every_message_over_on_its_own(
    one_by_one_bus: EventBus,
) -> None:
    bus, topic, values = one_by_one_bus, name("t"), numbered(5)
    got, dead = BatchCollector(poison=b"m:2"), Collector()
    await bus.publish_batch([(topic, "lead-1", v) for v in values])
    await bus.subscribe(name("g"), [topic], got)
    await bus.subscribe(name("g"), [topic + ".dlq"], dead)
    await eventually(lambda: len(got.singles) == 5 and len(dead.seen) == 1, 20)
    assert got.batches == []
    assert got.singles == values
    assert got.values() == [v for v in values if v != b"m:2"]


async def test_a_batch_holds_at_most_batch_max_messages(bus_of_three: EventBus) -> None:
    bus, topic, got, values = bus_of_three, name("t"), BatchCollector(), numbered(8)
    await bus.publish_batch([(topic, "lead-1", v) for v in values])
    await bus.subscribe(name("g"), [topic], got)
    await eventually(lambda: got.values() == values, 20)
    assert got.batches and all(len(batch) <= 3 for batch in got.batches)


async def test_a_dead_letter_topic_is_listed_and_replayed_once(tansu: Any) -> None:
    from leadpact.dlq import list_parked, replay

    settings = Settings(
        bus_url=tansu.url,
        kafka_partitions=PARTITIONS,
        kafka_enable_idempotence=False,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
    )
    kafka = bus_from_url(settings)
    await kafka.start()
    try:
        topic, fixed, got = name("t"), [False], Collector()

        async def handler(msg: Message) -> None:
            if not fixed[0]:
                raise DeadLetter("scoring model missing")
            await got(msg)

        await kafka.subscribe(name("g"), [topic], handler)
        await kafka.publish(topic, "lead-1", b"event")

        async def parked_now() -> list[Any]:
            return await list_parked(tansu.bootstrap, topic)

        parked = await eventually(parked_now, 20)
        assert parked[0].error == "DeadLetter: scoring model missing"

        fixed[0] = True
        assert await replay(tansu.bootstrap, topic, enable_idempotence=False) == 1
        await eventually(lambda: got.values() == [b"event"], 20)
        assert await replay(tansu.bootstrap, topic, enable_idempotence=False) == 0
    finally:
        await kafka.stop()


def by_key(messages: Sequence[Message]) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for m in messages:
        found.setdefault(m.key, []).append(m.value)
    return found


async def test_what_several_partitions_have_ready_is_handled_once_each_in_order(
    bus: EventBus,
) -> None:
    """Both buses hand what several partitions have ready to ``handle_round`` at once (one
    transaction for the dispatcher): every message once, each key's in order, every offset
    committed."""
    topic, group, got = name("t"), name("g"), RoundCollector()
    sent = [(topic, f"lead-{n % 9}", b"m:%d" % n) for n in range(36)]
    await bus.publish_batch(sent)
    member = await bus.subscribe(group, [topic], got)
    await eventually(lambda: len(got.seen) == len(sent), 20)
    assert by_key(got.seen) == by_key([Message(t, k, v, 0, 0) for t, k, v in sent])
    assert any(len(batches) > 1 for batches in got.rounds)
    await eventually(lambda: sum(member.lag().values()) == 0, 20)

    await member.stop()  # every partition's offset is committed: nothing comes again
    after = Collector()
    await bus.subscribe(group, [topic], after)
    await bus.publish(topic, "lead-1", b"after")
    await eventually(lambda: after.values() == [b"after"], 30)


async def test_a_poison_message_in_a_round_is_isolated_and_the_others_handled_once(
    bus: EventBus,
) -> None:
    topic, group, dead = name("t"), name("g"), Collector()
    got = RoundCollector(poison=b"m:13")
    sent = [(topic, f"lead-{n % 9}", b"m:%d" % n) for n in range(36)]
    await bus.publish_batch(sent)
    member = await bus.subscribe(group, [topic], got)
    await bus.subscribe(name("g"), [topic + ".dlq"], dead)
    await eventually(lambda: len(got.seen) == len(sent) - 1 and len(dead.seen) == 1, 20)
    fine = [(t, k, v) for t, k, v in sent if v != b"m:13"]
    assert by_key(got.seen) == by_key([Message(t, k, v, 0, 0) for t, k, v in fine])
    assert dead.seen[0].value == b"m:13"
    assert any(b"m:13" in batch for batches in got.rounds for batch in batches)
    await eventually(lambda: sum(member.lag().values()) == 0, 20)
    assert len(got.seen) == len(sent) - 1
