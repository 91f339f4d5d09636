"""Kafka bus (aiokafka), for Apache Kafka in production and tansu in tests.

Producer: acks=all, the default murmur2 partitioner (so a key lands on the same partition as
on the memory bus), idempotence chosen by settings (tansu does not support it). Consumers:
one AIOKafkaConsumer per subscription, auto-commit off; each partition's messages are handled
in order and its offset committed only after the handler returned. A message that keeps
failing goes to ``<topic>.dlq``. Topics are created on first use with the configured
partition count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from leadpact.bus.base import (
    Message,
    MessageHandler,
    PartitionListener,
    dead_letter_headers,
    deliver_batch,
    dlq_topic,
)
from leadpact.tasks import cancel_and_wait

log = structlog.get_logger("leadpact.bus.kafka")


def _headers_in(raw: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (raw or ())}


def _headers_out(headers: dict[str, str] | None) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in (headers or {}).items()]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: KafkaSubscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        owned = {(tp.topic, tp.partition) for tp in revoked}
        self.sub._owned -= owned
        if owned and self.sub.on_revoked is not None:
            await self.sub.on_revoked(owned)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        owned = {(tp.topic, tp.partition) for tp in assigned}
        self.sub._owned |= owned
        if owned and self.sub.on_assigned is not None:
            await self.sub.on_assigned(owned)


class KafkaSubscription:
    def __init__(
        self,
        bus: KafkaBus,
        group: str,
        topics: Sequence[str],
        handler: MessageHandler,
        on_assigned: PartitionListener | None,
        on_revoked: PartitionListener | None,
    ) -> None:
        self.bus = bus
        self.group = group
        self.topics: Sequence[str] = list(topics)
        self.handler = handler
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._owned: set[tuple[str, int]] = set()
        self._next: dict[tuple[str, int], int] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bus.bootstrap_servers,
            group_id=group,
            client_id=f"{bus.client_id}-{group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **bus.consumer_options,
        )
        self._task: asyncio.Task[None] | None = None

    def assignment(self) -> set[tuple[str, int]]:
        return set(self._owned)

    def lag(self) -> dict[tuple[str, int], int]:
        """High-water mark from the last fetch minus the next offset to handle."""
        lags: dict[tuple[str, int], int] = {}
        for topic, part in self._owned:
            tp = TopicPartition(topic, part)
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lags[(topic, part)] = max(0, highwater - self._next.get((topic, part), highwater))
        return lags

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(list(self.topics), listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"kafka-consumer:{self.group}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(KafkaError):
            await self._consumer.stop()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
                await asyncio.gather(*(self._partition(tp, recs) for tp, recs in batches.items()))
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("consumer error, retrying", group=self.group, error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _partition(self, tp: TopicPartition, records: list[Any]) -> None:
        """Handle one partition's records in order, in batches of at most ``batch_max``
        (:func:`deliver_batch`), committing the offset after each handled batch."""
        if records:
            self._next.setdefault((tp.topic, tp.partition), records[0].offset)
        msgs = [
            Message(
                topic=record.topic,
                key=(record.key or b"").decode(errors="replace"),
                value=record.value or b"",
                partition=record.partition,
                offset=record.offset,
                headers=_headers_in(record.headers),
            )
            for record in records
        ]

        async def delivered(msg: Message) -> None:
            await self._commit(tp, msg.offset + 1)
            self._next[(tp.topic, tp.partition)] = msg.offset + 1

        size = self.bus.batch_max
        for start in range(0, len(msgs), size):
            await deliver_batch(
                self.handler,
                msgs[start : start + size],
                self.bus.retries,
                self.bus._dead_letter,
                delivered,
            )

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._consumer.commit({tp: offset})
        except KafkaError as exc:
            # Lost the partition in a rebalance: the new owner gets the message again,
            # and the inbox makes the second delivery harmless.
            log.warning("offset commit failed", partition=str(tp), error=str(exc))


class KafkaBus:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 6,
        replication_factor: int = 1,
        enable_idempotence: bool = True,
        client_id: str = "leadpact",
        retries: int = 3,
        batch_max: int = 100,
        request_timeout_ms: int = 10_000,
        **consumer_options: Any,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.enable_idempotence = enable_idempotence
        self.client_id = client_id
        self.retries = retries
        self.batch_max = max(1, batch_max)
        self.request_timeout_ms = request_timeout_ms
        self.consumer_options: dict[str, Any] = {"metadata_max_age_ms": 5_000, **consumer_options}
        self._producer: AIOKafkaProducer | None = None
        self._known_topics: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._subscriptions: list[KafkaSubscription] = []

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=self.enable_idempotence,
            request_timeout_ms=self.request_timeout_ms,
            linger_ms=1,
        )
        await self._producer.start()

    async def stop(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        self._subscriptions.clear()
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()
            self._producer = None

    async def healthy(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=2)
            return True
        except (TimeoutError, KafkaError, OSError):
            return False

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create ``topics`` and their dead-letter topics if missing."""
        wanted = {t for topic in topics for t in (topic, dlq_topic(topic))} - self._known_topics
        if not wanted:
            return
        async with self._topic_lock:
            wanted -= self._known_topics
            if not wanted:
                return
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-admin"
            )
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = sorted(wanted - existing)
                if missing:
                    with contextlib.suppress(TopicAlreadyExistsError):
                        await admin.create_topics(
                            [NewTopic(t, self.partitions, self.replication_factor) for t in missing]
                        )
            finally:
                await admin.close()
            self._known_topics |= wanted

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus.start() was not called")
        return self._producer

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await self.ensure_topics([topic.removesuffix(".dlq")])
        await self._require_producer().send_and_wait(
            topic, value, key=key.encode(), headers=_headers_out(headers)
        )

    async def publish_batch(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        await self.ensure_topics(sorted({t for t, _, _ in messages}))
        producer = self._require_producer()
        # send() enqueues in call order, so awaiting every future afterwards keeps each
        # partition's order while the whole batch shares round trips.
        futures = [await producer.send(t, v, key=k.encode()) for t, k, v in messages]
        await asyncio.gather(*futures)

    async def _dead_letter(self, msg: Message, error: str) -> None:
        await self.publish(
            dlq_topic(msg.topic), msg.key, msg.value, dead_letter_headers(msg, error)
        )

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: MessageHandler,
        *,
        on_assigned: PartitionListener | None = None,
        on_revoked: PartitionListener | None = None,
    ) -> KafkaSubscription:
        await self.ensure_topics(topics)
        sub = KafkaSubscription(self, group, topics, handler, on_assigned, on_revoked)
        await sub.start()
        self._subscriptions.append(sub)
        return sub
