"""The embedded bus hands a member what all its partitions have ready as one round, the
partitions in the order their messages were published, whatever the topics are called."""

from __future__ import annotations

from collections.abc import Sequence

from leadpact.bus import Message
from leadpact.bus.memory import MemoryBus
from tests.fixtures.waiting import eventually


class Rounds:
    """A round handler that keeps what each round brought, as (topic, values) per batch."""

    def __init__(self) -> None:
        self.rounds: list[list[tuple[str, list[bytes]]]] = []
        self.singles: list[bytes] = []

    async def __call__(self, msg: Message) -> None:
        self.singles.append(msg.value)

    async def handle_batch(self, msgs: Sequence[Message]) -> None:
        await self.handle_round([msgs])

    async def handle_round(self, batches: Sequence[Sequence[Message]]) -> None:
        self.rounds.append([(msgs[0].topic, [m.value for m in msgs]) for msgs in batches])


async def test_a_round_takes_the_partitions_in_the_order_they_were_published_to() -> None:
    bus = MemoryBus(partitions=1)
    # lead.created sorts after lead.activity: published first, it must come first.
    await bus.publish("lead.created", "L1", b"created")
    await bus.publish("lead.activity", "L1", b"visited pricing")
    await bus.publish("lead.created", "L2", b"created again")
    got = Rounds()

    await bus.subscribe("scoring", ["lead.activity", "lead.created"], got)

    await eventually(lambda: got.rounds, 5)
    assert got.rounds[0] == [
        ("lead.created", [b"created", b"created again"]),
        ("lead.activity", [b"visited pricing"]),
    ]


async def test_what_arrives_while_a_round_runs_comes_in_the_next() -> None:
    bus = MemoryBus(partitions=2)
    got = Rounds()
    await bus.subscribe("scoring", ["lead.created"], got)

    await bus.publish("lead.created", "L1", b"first")
    await eventually(lambda: got.singles == [b"first"], 5)
    for lead in ("L1", "L2", "L3", "L4"):
        await bus.publish("lead.created", lead, lead.encode())

    await eventually(lambda: sum(len(b) for r in got.rounds for _, b in r) == 4, 5)
    assert len(got.rounds) == 1
    assert len(got.rounds[0]) == 2  # both partitions in the one round
