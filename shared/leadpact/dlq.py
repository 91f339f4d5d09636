"""Dead-letter topics: look at what was parked and, once the cause is fixed, replay it.

``leadpact dlq list lead.created`` prints what sits in ``lead.created.dlq`` with its error;
``leadpact dlq replay lead.created`` publishes each parked message back to its original topic
once (a consumer group remembers how far the replay got), so a second replay sends nothing
again. Consumers are idempotent, so a replayed event that had in fact been handled is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from leadpact.bus.base import ERROR_HEADER, ORIGIN_TOPIC_HEADER, dlq_topic


@dataclass(frozen=True)
class Parked:
    origin: str
    key: str
    error: str
    value: bytes
    offset: int


async def _drain(
    bootstrap: str, topic: str, group: str | None, visit: Callable[[Parked], Awaitable[None]]
) -> int:
    """Read ``<topic>.dlq`` from the group's position (or the start) to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    count = 0
    try:
        parts = consumer.partitions_for_topic(dlq_topic(topic)) or set()
        tps = [TopicPartition(dlq_topic(topic), p) for p in sorted(parts)]
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
                    await visit(
                        Parked(
                            origin=headers.get(ORIGIN_TOPIC_HEADER, topic),
                            key=(record.key or b"").decode(),
                            error=headers.get(ERROR_HEADER, ""),
                            value=record.value or b"",
                            offset=record.offset,
                        )
                    )
                    count += 1
                    if group is not None:
                        await consumer.commit({tp: record.offset + 1})
    finally:
        await consumer.stop()
    return count


async def list_parked(bootstrap: str, topic: str) -> list[Parked]:
    found: list[Parked] = []

    async def keep(parked: Parked) -> None:
        found.append(parked)

    await _drain(bootstrap, topic, None, keep)
    return found


async def replay(bootstrap: str, topic: str, *, enable_idempotence: bool = True) -> int:
    """Publish every not-yet-replayed message of ``<topic>.dlq`` back to its origin."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=enable_idempotence
    )
    await producer.start()

    async def send_back(parked: Parked) -> None:
        await producer.send_and_wait(parked.origin, parked.value, key=parked.key.encode())

    try:
        return await _drain(bootstrap, topic, f"leadpact-dlq-replay-{topic}", send_back)
    finally:
        await producer.stop()
