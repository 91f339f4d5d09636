"""Transactional outbox, inbox and the unit of work that ties them to one transaction.

A service never publishes directly: it adds events to the outbox inside the transaction that
changes its state, and the relay publishes them after commit. A consumer records each event
id in the inbox inside the transaction of its effect, so a redelivered event has no effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import Any

import orjson
import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from leadpact.bus.base import EventBus
from leadpact.clock import Clock
from leadpact.db import CoreConnection, Database, core_connection
from leadpact.events import CloudEvent, EventData, envelope
from leadpact.tasks import cancel_and_wait, wait_at_most

log = structlog.get_logger("leadpact.outbox")

MESSAGING = MetaData()
"""Tables every service has in its own database (added to its migrations)."""

outbox = Table(
    "outbox",
    MESSAGING,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(128), nullable=False),
    Column("key", String(128), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

inbox = Table(
    "inbox",
    MESSAGING,
    Column("consumer", String(128), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("handled_at", DateTime(timezone=True), nullable=False),
)


class UnitOfWork:
    """One database transaction plus the events it will publish once committed."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        source: str,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._source = source
        self._on_commit = on_commit
        self.session: AsyncSession = db.session()
        self.emitted: list[CloudEvent[Any]] = []
        self._written: set[str] = set()  # ids of ``emitted`` a commit put in the outbox
        self._after_commit: list[Callable[[], None]] = []
        # The bus partition of each event being handled, by id (set by the dispatcher).
        self.partitions: dict[str, int] = {}

    def partition_of(self, event_id: str) -> int | None:
        """The bus partition the event ``event_id`` came from (None outside a delivery):
        the sla-monitor ties a lead's deadlines to it, so that whoever owns the partition
        watches them."""
        return self.partitions.get(event_id)

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()

    def emit(self, data: EventData, contract_version: str | None = None) -> CloudEvent[Any]:
        """Queue ``data`` for publication; it is written to the outbox in this transaction."""
        event = envelope(
            data, source=self._source, time=self._clock.now(), contract_version=contract_version
        )
        self.emitted.append(event)
        return event

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run ``effect`` once this transaction has committed, never if it rolls back.

        Metrics go here: a handler retried after a failed commit must not count twice."""
        self._after_commit.append(effect)

    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record ``event_id`` as handled by ``consumer``; False when it already was."""
        return bool(await self.claim_all(consumer, [event_id]))

    async def claim_all(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record every id of ``event_ids`` as handled by ``consumer`` in one statement;
        the ids not handled before. An id given twice is claimed once: its first
        occurrence is the one to handle."""
        fresh = list(dict.fromkeys(event_ids))
        if not fresh:
            return set()
        at = self._clock.now()
        rows = [{"consumer": consumer, "event_id": i, "handled_at": at} for i in fresh]
        connection = await self.connection()
        claimed = await connection.insert_rows(
            inbox, rows, skip_conflicts_on=(), returning=("event_id",)
        )
        return {event_id for (event_id,) in claimed}

    async def connection(self) -> CoreConnection:
        """This unit of work's transaction, for Core statements: what ``session.execute``
        would run, for about half of its CPU on SQLite (:class:`leadpact.db.CoreConnection`).
        The transaction is the session's: ``commit`` and rollback take both along."""
        return await core_connection(self.session)

    async def flush(self) -> None:
        """Write the session's pending ORM changes into the transaction. With none pending
        (handlers that write through :meth:`connection`) it returns at once, where
        ``session.flush`` would still cost a greenlet switch."""
        session = self.session
        if session.new or session.dirty or session.deleted:
            await session.flush()

    async def commit(self) -> None:
        # Only what an earlier commit of this unit of work did not write yet (a consumer
        # batch may commit more than once); ``emitted`` keeps every event for callers.
        fresh = [e for e in self.emitted if e.id not in self._written]
        if fresh:
            await (await self.connection()).insert_rows(
                outbox,
                [
                    {
                        "event_id": e.id,
                        "topic": e.topic,
                        "key": e.subject,
                        "payload": e.to_json(),
                        "created_at": e.time,
                    }
                    for e in fresh
                ],
            )
        await self.session.commit()
        self._written.update(e.id for e in fresh)
        if fresh:
            self._on_commit()
        effects, self._after_commit = self._after_commit, []
        for effect in effects:
            effect()


class OutboxRelay:
    """Publishes committed outbox rows in order, deleting each once the broker has it.

    Woken right after a commit that emitted events, and polling otherwise, so events written
    while the broker was down go out when it is back; the API keeps accepting meanwhile.
    """

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        poll_seconds: float = 0.5,
        batch: int = 200,
        on_published: Callable[[str], None] = lambda topic: None,
        linger_seconds: float = 0.0,
    ) -> None:
        self._db = db
        self._bus = bus
        self._poll = poll_seconds
        self._batch = batch
        self._linger = linger_seconds
        self._on_published = on_published
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pending = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        backoff = self._poll
        while True:
            # Cleared before the pass: a commit during the pass wakes the next one.
            self._wake.clear()
            try:
                moved = await self.relay_once()
                backoff = self._poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker or database down: retry later
                log.warning("outbox relay failed, will retry", error=str(exc))
                moved = 0
                backoff = min(backoff * 2, 5.0)
            if moved >= self._batch:
                continue  # more may be waiting
            if moved and self._linger:
                # Under load, let the next pass gather the rows of several commits: a pass
                # costs ~0.6 ms of CPU before its first row (intake, PostgreSQL, measured).
                # A lone commit is not delayed: the pass after an idle wait runs at once.
                await asyncio.sleep(self._linger)
            await wait_at_most(backoff, self._wake.wait())

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows went out."""
        # A Core connection and statements built once: the relay runs after every commit
        # that emitted, and the ORM session cost more than the publishing (profiled).
        # The batch is deleted and returned by one statement, whose deletion commits only
        # once the bus has every row (a failed publish rolls it back): one round trip
        # fewer per pass than a SELECT and a DELETE.
        async with self._db.engine.begin() as conn:
            query = _TAKE_BATCH if self._db.is_sqlite else _TAKE_BATCH_LOCKED
            taken = (await conn.execute(query, {"batch": self._batch})).all()
            rows = sorted(taken, key=lambda r: r.id)  # RETURNING has no order of its own
            await self._bus.publish_batch([(r.topic, r.key, r.payload) for r in rows])
            for row in rows:
                self._on_published(row.topic)
        self.pending = len(rows)
        return len(rows)


_NEXT_IDS = select(outbox.c.id).order_by(outbox.c.id).limit(bindparam("batch"))


def _take(ids: Any) -> Any:
    """Delete the outbox rows of ``ids`` (a subquery) and return them."""
    returned = (outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload)
    return delete(outbox).where(outbox.c.id.in_(ids)).returning(*returned)


_TAKE_BATCH = _take(_NEXT_IDS)
# Two relays (replicas) take different rows instead of waiting for each other.
_TAKE_BATCH_LOCKED = _take(_NEXT_IDS.with_for_update(skip_locked=True))


EventDataChange = Callable[[str, dict[str, Any]], dict[str, Any]]


async def rewrite_pending_events(
    session: AsyncSession, keys: Collection[str], change: EventDataChange
) -> int:
    """Rewrite, in this transaction, the ``data`` of events keyed by ``keys`` that the relay
    has not published yet; ``change(topic, data)`` returns the new data. Used by erasure:
    what is still in the outbox goes out without the person. Returns how many changed."""
    if not keys:
        return 0
    rows = (
        await session.execute(
            select(outbox.c.id, outbox.c.topic, outbox.c.payload).where(
                outbox.c.key.in_(list(keys))
            )
        )
    ).all()
    for row_id, topic, payload in rows:
        doc = orjson.loads(payload)
        doc["data"] = change(topic, doc["data"])
        await session.execute(
            update(outbox).where(outbox.c.id == row_id).values(payload=orjson.dumps(doc))
        )
    return len(rows)
