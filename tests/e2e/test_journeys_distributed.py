"""The journeys in the distributed mode: five processes, events over a real Kafka-protocol
broker (tansu), state in PostgreSQL, the real clock with a five-second deadline."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from leadpact.bus import Message, bus_from_url
from leadpact.events import CloudEvent, decode
from leadpact.settings import Settings
from tests.e2e import journeys
from tests.fixtures.distributed import DistributedFactory, DistributedSystem

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "seconds.yaml"
WATCHED = ["sla.breached", "lead.rejected", "lead.scored"]


class Recorder:
    """Reads the watched topics as an extra consumer group, like an auditor would."""

    def __init__(self) -> None:
        self.seen: dict[str, list[CloudEvent[Any]]] = defaultdict(list)

    async def __call__(self, msg: Message) -> None:
        self.seen[msg.topic].append(decode(msg.value))


@pytest.fixture
async def deployment(
    distributed_factory: DistributedFactory,
) -> AsyncIterator[journeys.Deployment]:
    system: DistributedSystem = await distributed_factory(CONTRACT)
    bus = bus_from_url(
        Settings(
            bus_url=system.bus_url,
            kafka_enable_idempotence=False,
            kafka_partitions=3,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
        )
    )
    await bus.start()
    recorder = Recorder()
    subscription = await bus.subscribe(f"e2e-{uuid.uuid4().hex[:6]}", WATCHED, recorder)

    async def events(topic: str) -> list[CloudEvent[Any]]:
        return list(recorder.seen[topic])

    async def let_deadline_pass() -> None:
        return None  # the 5 s deadline passes on the real clock while the test polls

    yield journeys.Deployment(
        lambda name: system.clients[name], events, let_deadline_pass, timeout=30.0
    )
    await subscription.stop()
    await bus.stop()


async def test_mql_breach_and_timely_response(deployment: journeys.Deployment) -> None:
    await journeys.journey_mql_breach_and_response(deployment)


async def test_a_rejection_without_a_valid_reason_is_refused(
    deployment: journeys.Deployment,
) -> None:
    await journeys.journey_rejection_needs_a_reason(deployment)
