"""Kafka bus (aiokafka), for Apache Kafka in production and tansu in tests.

Producer: acks=all, the default murmur2 partitioner (so a key lands on the same partition as
on the memory bus), idempotence chosen by settings (tansu does not support it). Consumers:
one AIOKafkaConsumer per subscription, auto-commit off; each partition's messages are handled
in order, and the offsets a fetch round handled are committed together (one request for all
partitions) once the round is over, never before the handler returned. A message that keeps
failing goes to ``<topic>.dlq``. Topics are created on first use with the configured
partition count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from leadpact.bus.base import (
    Message,
    MessageHandler,
    PartitionListener,
    dead_letter_headers,
    deliver_batch,
    deliver_round,
    dlq_topic,
)
from leadpact.tasks import cancel_and_wait

log = structlog.get_logger("leadpact.bus.kafka")

# Longest a stopping subscription waits to commit what its last round handled.
STOP_COMMIT_SECONDS = 2.0


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
        self.sub._fence(owned)
        if owned and self.sub.on_revoked is not None:
            await self.sub.on_revoked(owned)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        owned = {(tp.topic, tp.partition) for tp in assigned}
        self.sub._owned |= owned
        self.sub._fresh |= owned  # checked against the log end: see _check_positions
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
        # The log-loss guard (see _fence, _check_positions): partitions revoked while
        # records of theirs were being handled, the offset commits in progress, the
        # partitions to move back to their committed offsets before the next fetch, and
        # the newly assigned ones whose position is not yet checked against the log end.
        self._fenced: set[tuple[str, int]] = set()
        self._commits: dict[tuple[str, int], asyncio.Future[None]] = {}
        # The next offset of each partition whose records this fetch round has handled,
        # committed together once the round is over (see _commit_handled).
        self._handled: dict[tuple[str, int], int] = {}
        self._unsure: set[tuple[str, int]] = set()
        self._fresh: set[tuple[str, int]] = set()
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
        # What the interrupted round handled, so that a restart does not read it again
        # (harmless if it did: the inbox); never longer than a stop may take.
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(STOP_COMMIT_SECONDS):
                await self._commit_handled()
        with contextlib.suppress(KafkaError):
            await self._consumer.stop()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._check_positions()
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
                try:
                    await self._round(batches)
                finally:
                    if not self._stopping():
                        await self._commit_handled()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("consumer error, retrying", group=self.group, error=str(exc))
                # The fetch moved the positions past records that may not all have been
                # handled: go back to the committed offsets before fetching again.
                self._unsure |= self._owned
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _round(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        """Handle what one fetch brought: with a :class:`RoundHandler` and records of
        several partitions (none beyond ``batch_max``), every partition's records in one
        ``handle_round`` call; otherwise, or when that raises, each partition apart
        (:meth:`_partition`), concurrently."""
        fetched = {tp: self._messages(tp, records) for tp, records in batches.items() if records}
        fits = all(len(msgs) <= self.bus.batch_max for msgs in fetched.values())
        if fits and await deliver_round(self.handler, list(fetched.values()), self.group):
            for msgs in fetched.values():
                self._delivered(msgs[-1])
            return
        await asyncio.gather(*(self._partition(msgs) for msgs in fetched.values()))

    def _messages(self, tp: TopicPartition, records: list[Any]) -> list[Message]:
        self._next.setdefault((tp.topic, tp.partition), records[0].offset)
        return [
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

    def _delivered(self, msg: Message) -> None:
        key = (msg.topic, msg.partition)
        # A partition revoked since this record was fetched (see _fence) is not committed:
        # whoever owns it now resumes from the offset committed before, and the inbox makes
        # the second delivery harmless.
        if key not in self._fenced:
            self._handled[key] = msg.offset + 1
        self._next[key] = msg.offset + 1

    async def _partition(self, msgs: list[Message]) -> None:
        """Handle one partition's messages in order, in batches of at most ``batch_max``
        (:func:`deliver_batch`), noting the offset after each handled batch."""

        async def delivered(msg: Message) -> None:
            self._delivered(msg)

        size = self.bus.batch_max
        for start in range(0, len(msgs), size):
            await deliver_batch(
                self.handler,
                msgs[start : start + size],
                self.bus.retries,
                self.bus._dead_letter,
                delivered,
            )

    def _stopping(self) -> bool:
        task = asyncio.current_task()
        return bool(task and task.cancelling())

    async def _commit_handled(self) -> None:
        """Commit the offsets this round handled, every partition in one request.

        Once per fetch round rather than after each partition's batch: below saturation a
        round brings a record or two per partition, and a commit per partition was the
        largest share of the requests each lead caused (OffsetCommit 0.3-1.1 per lead and
        consumer, measured; notes/issue-9-distributed.md). Offsets are still committed
        only for handled records, so nothing is skipped; a crash re-reads at most the
        round (the inbox makes that harmless)."""
        offsets = {
            TopicPartition(*key): offset
            for key, offset in self._handled.items()
            if key not in self._fenced
        }
        self._handled.clear()
        if not offsets:
            return
        commit = asyncio.ensure_future(self._consumer.commit(offsets))
        keys = [(tp.topic, tp.partition) for tp in offsets]
        for key in keys:
            self._commits[key] = commit
        try:
            await commit
        except asyncio.CancelledError:
            if commit.cancelled() and self._fenced & set(keys) and not self._stopping():
                # Abandoned by _fence: the partitions still owned go with the next round.
                for tp, offset in offsets.items():
                    key = (tp.topic, tp.partition)
                    if key not in self._fenced:
                        self._handled.setdefault(key, offset)
                return
            raise
        except KafkaError as exc:
            # Lost the partition in a rebalance: the new owner gets the message again,
            # and the inbox makes the second delivery harmless.
            log.warning("offset commit failed", partitions=sorted(keys), error=str(exc))
        finally:
            for key in keys:
                if self._commits.get(key) is commit:
                    del self._commits[key]

    def _fence(self, revoked: set[tuple[str, int]]) -> None:
        """A rebalance took ``revoked`` away: offsets of records fetched before it are not
        committed after it, and a commit still in progress is abandoned.

        aiokafka commits with the group generation current when the request is *sent* and
        retries retriable errors (UnknownTopicOrPartition included) until they pass, so a
        batch still being handled across a rebalance would commit its old offsets under the
        new generation. When the broker lost its log (tansu restarted; on Kafka a topic
        deleted and recreated) those offsets land on the new log, and the partition resumes
        there at, say, 4: offsets 0-3 of the new log are skipped. The fence holds until the
        next fetch (:meth:`_check_positions`), when that batch has been handled.
        """
        self._fenced |= revoked
        for key in revoked:
            self._handled.pop(key, None)
            commit = self._commits.get(key)
            if commit is not None and not commit.done():
                commit.cancel()

    async def _check_positions(self) -> None:
        """Before each fetch, when nothing of the previous one is being handled any more:
        lift the fences (:meth:`_fence`); move back the partitions of a batch that failed
        half-way (``_unsure``, see ``_run``) to their committed offsets; and check newly
        assigned partitions (``_fresh``) against the log end.

        aiokafka starts a partition at its committed offset even when that lies beyond the
        log end (a log that lost its tail: a broker that lost its data, a topic recreated,
        an unclean leader election), trusting the broker to answer OFFSET_OUT_OF_RANGE and
        then resetting to ``auto_offset_reset``. tansu answers such a fetch with nothing, so
        the consumer would wait there and skip what the new log holds below. The first
        fetch answer carries the high-water mark: a position beyond it goes back to the
        beginning. (tansu's ListOffsets is no judge here: it reports the last *batch*'s
        base offset + 1, e.g. 6 for a log whose high-water mark is 8.)
        """
        for key in self._fenced:
            self._next.pop(key, None)
        self._fenced.clear()
        unsure = self._unsure & self._owned
        self._unsure.clear()
        if unsure:
            await self._rewind(unsure)
        self._fresh &= self._owned
        for key in sorted(self._fresh):
            tp = TopicPartition(*key)
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue  # no fetch answered yet
            self._fresh.discard(key)
            try:
                position = await self._consumer.position(tp)
            except KafkaError:
                continue
            if position > highwater:
                log.warning(
                    "position beyond the log end, reading it from the beginning",
                    partition=str(tp),
                    position=position,
                    log_end=highwater,
                )
                await self._consumer.seek_to_beginning(tp)
                self._next.pop(key, None)

    async def _rewind(self, keys: set[tuple[str, int]]) -> None:
        """Move ``keys`` back to their committed offsets (the log start when nothing is
        committed), never forward: re-reading is harmless (every service's inbox dedupes
        by event id), skipping is not."""
        tps = [TopicPartition(topic, part) for topic, part in sorted(keys)]
        try:
            begin = await self._consumer.beginning_offsets(tps)
            committed = await asyncio.gather(*(self._consumer.committed(tp) for tp in tps))
            positions = [await self._consumer.position(tp) for tp in tps]
        except KafkaError as exc:
            log.warning("cannot rewind yet", group=self.group, error=str(exc))
            self._unsure |= keys  # again before the next fetch
            return
        for tp, done, position in zip(tps, committed, positions, strict=True):
            target = begin[tp] if done is None or done < begin[tp] else done
            if target < position:
                self._consumer.seek(tp, target)
                self._next.pop((tp.topic, tp.partition), None)


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
        with self._forget_topics_if_gone([topic]):
            await self._require_producer().send_and_wait(
                topic, value, key=key.encode(), headers=_headers_out(headers)
            )

    async def publish_batch(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        await self.ensure_topics(sorted({t for t, _, _ in messages}))
        producer = self._require_producer()
        # send() enqueues in call order, so awaiting every future afterwards keeps each
        # partition's order while the whole batch shares round trips.
        with self._forget_topics_if_gone([t for t, _, _ in messages]):
            futures = [await producer.send(t, v, key=k.encode()) for t, k, v in messages]
            await asyncio.gather(*futures)

    @contextlib.contextmanager
    def _forget_topics_if_gone(self, topics: Sequence[str]) -> Iterator[None]:
        """A send that fails because the topic or partition is unknown may mean the topic
        is gone: a broker that lost its log, a topic deleted. (aiokafka retries
        UNKNOWN_TOPIC_OR_PARTITION until the batch expires after ``request_timeout_ms``,
        then raises it, or NotLeaderForPartition when the partition has no leader in the
        metadata any more; a send to a topic missing from the metadata raises
        UnknownTopicOrPartition after the same time.) ``_known_topics`` would keep
        ``ensure_topics`` from recreating it, and with ``auto.create.topics.enable=false``
        (docker-compose) every later publish would fail until a restart; so forget them,
        and the next publish recreates what is missing with the configured partition
        count. (tansu auto-creates a topic, with 4 partitions, on any metadata request
        naming it, which aiokafka always allows: there the count is tansu's.)"""
        try:
            yield
        except (UnknownTopicOrPartitionError, NotLeaderForPartitionError, KafkaTimeoutError):
            bases = {topic.removesuffix(".dlq") for topic in topics}
            self._known_topics -= {t for base in bases for t in (base, dlq_topic(base))}
            raise

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
