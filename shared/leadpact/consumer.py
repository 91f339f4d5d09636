"""Turns bus messages into calls of a service's event handlers, once per event.

A handler is a plain function ``async def on_x(event: CloudEvent[X], uow, clock) -> None``
listed in the service's ``EVENT_HANDLERS`` map. This module validates the envelope (invalid →
dead-letter topic), claims the event id in the inbox, runs the handler and commits, all in
one transaction: the bus commits the offset only after that. Under load the bus hands over a
partition's ready messages at once (:meth:`EventDispatcher.handle_batch`): one transaction
for all of them, and one by one again if that fails.

A service may also list a *batch handler* for a topic, ``async def on_xs(events:
Sequence[CloudEvent[X]], uow, clock)``, that takes a batch's events in one call (one
query or one model call for all of them instead of one each). Its effect must equal calling
the event handler on each event in order; the event handler still serves single events and
the one-by-one fallback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from leadpact.bus.base import DeadLetter, Message
from leadpact.clock import Clock
from leadpact.events import CloudEvent, EventData, InvalidEvent, decode
from leadpact.messaging import UnitOfWork
from leadpact.metrics import ServiceMetrics

log = structlog.get_logger("leadpact.consumer")

EventHandler = Callable[[CloudEvent[Any], UnitOfWork, Clock], Awaitable[None]]
BatchEventHandler = Callable[[Sequence[CloudEvent[Any]], UnitOfWork, Clock], Awaitable[None]]
UowFactory = Callable[[], UnitOfWork]


class EventDispatcher:
    def __init__(
        self,
        consumer: str,
        handlers: Mapping[type[EventData], EventHandler],
        uow_factory: UowFactory,
        clock: Clock,
        metrics: ServiceMetrics,
        retries: int = 3,
        backoff: float = 0.05,
        batch_handlers: Mapping[type[EventData], BatchEventHandler] | None = None,
    ) -> None:
        self.consumer = consumer
        self._handlers = {model.topic: h for model, h in handlers.items()}
        self._batch_handlers = {model.topic: h for model, h in (batch_handlers or {}).items()}
        if unknown := set(self._batch_handlers) - set(self._handlers):
            raise ValueError(f"batch handlers without an event handler: {sorted(unknown)}")
        self._uow = uow_factory
        self._clock = clock
        self._metrics = metrics
        self._retries = retries
        self._backoff = backoff

    @property
    def topics(self) -> list[str]:
        return sorted(self._handlers)

    def _decode(self, msg: Message) -> tuple[CloudEvent[Any], EventHandler]:
        """The event and its handler; InvalidEvent or DeadLetter when it can never be."""
        event = decode(msg.value)
        handler = self._handlers.get(event.topic)
        if handler is None or event.topic != msg.topic:
            raise DeadLetter(f"type: {event.type} does not belong on topic {msg.topic}")
        return event, handler

    async def __call__(self, msg: Message) -> None:
        try:
            event, handler = self._decode(msg)
        except InvalidEvent as exc:
            self._metrics.events_dead_lettered.labels(msg.topic).inc()
            log.warning("invalid event", topic=msg.topic, key=msg.key, error=str(exc))
            raise DeadLetter(str(exc)) from exc
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(event_id=event.id, lead_id=event.subject):
            await self._handle_with_retries(msg.topic, event, handler, msg.partition)
        self._metrics.events_consumed.labels(msg.topic).inc()
        self._metrics.event_handling.labels(msg.topic).observe(time.perf_counter() - started)

    async def handle_batch(self, msgs: Sequence[Message]) -> None:
        """Handle one partition's messages, in order, in one transaction: a claim and the
        handler per event, one commit (and one outbox insert) for all.

        All or nothing and silent about failures: an invalid message, a handler error or a
        failed commit raises with nothing committed, and the bus hands every message to
        :meth:`__call__` one by one (which retries, waits out an outage, dead-letters and
        counts). Metrics count only the events of a committed batch, and a failed batch
        once in ``leadpact_event_batches_failed_total`` (how often batching gives up)."""
        await self.handle_round([msgs])

    async def handle_round(self, batches: Sequence[Sequence[Message]]) -> None:
        """:meth:`handle_batch` for what a fetch round brought from several partitions
        (one batch each), all in one transaction: one claim, each batch in turn (with
        neighbouring batches of one topic joined, see :func:`_topic_runs`), one commit. A
        transaction per partition cost each its own begin, claim, outbox insert and commit,
        and a consumer's concurrent transactions waited on each other's row locks
        (sla-monitor's routing teams). All or nothing like :meth:`handle_batch`;
        the bus then hands each partition's batch to it apart."""
        batches = [msgs for msgs in batches if msgs]
        if not batches:
            return
        try:
            await self._handle_round(batches)
        except asyncio.CancelledError:
            raise
        except Exception:
            for topic in dict.fromkeys(msgs[0].topic for msgs in batches):
                self._metrics.event_batches_failed.labels(topic).inc()
            raise

    async def _handle_round(self, batches: Sequence[Sequence[Message]]) -> None:
        work = [[(msg, *self._decode(msg)) for msg in msgs] for msgs in _topic_runs(batches)]
        async with self._uow() as uow:
            for batch in work:
                for msg, event, _ in batch:
                    uow.partitions.setdefault(event.id, msg.partition)
            # One claim statement for the round; an id twice in it is handled once.
            to_handle = await uow.claim_all(
                self.consumer, [event.id for batch in work for _, event, _ in batch]
            )
            done: list[tuple[str, float]] = []
            duplicates: list[str] = []
            for batch in work:
                fresh: list[tuple[Message, CloudEvent[Any], EventHandler]] = []
                for msg, event, handler in batch:
                    if event.id in to_handle:
                        to_handle.discard(event.id)
                        fresh.append((msg, event, handler))
                    else:
                        duplicates.append(msg.topic)
                batch_handler = self._batch_handlers.get(batch[0][0].topic)
                if batch_handler is not None and len(fresh) > 1:
                    done += await self._run_together(batch_handler, fresh, uow)
                    _as_in_a_session_of_its_own(uow)
                else:
                    done += await self._run_in_turn(fresh, uow)
            done += [(topic, 0.0) for topic in duplicates]  # consumed, as __call__ counts them
            committing = time.perf_counter()
            await uow.commit()
            commit_share = (time.perf_counter() - committing) / len(done)
        for topic in duplicates:
            self._metrics.events_duplicate.labels(topic).inc()
        for topic, seconds in done:
            self._metrics.events_consumed.labels(topic).inc()
            self._metrics.event_handling.labels(topic).observe(seconds + commit_share)

    async def _run_in_turn(
        self, fresh: Sequence[tuple[Message, CloudEvent[Any], EventHandler]], uow: UnitOfWork
    ) -> list[tuple[str, float]]:
        """Each event through its own handler, as if in a session of its own; returns each
        event's topic and handling time."""
        done: list[tuple[str, float]] = []
        for msg, event, handler in fresh:
            started = time.perf_counter()
            with structlog.contextvars.bound_contextvars(event_id=event.id, lead_id=event.subject):
                await handler(event, uow, self._clock)
            await uow.flush()
            _as_in_a_session_of_its_own(uow)
            done.append((msg.topic, time.perf_counter() - started))
        return done

    async def _run_together(
        self,
        batch_handler: BatchEventHandler,
        fresh: Sequence[tuple[Message, CloudEvent[Any], EventHandler]],
        uow: UnitOfWork,
    ) -> list[tuple[str, float]]:
        """All events in one call of the topic's batch handler; each event is counted with
        an equal share of its time."""
        started = time.perf_counter()
        await batch_handler([event for _, event, _ in fresh], uow, self._clock)
        await uow.flush()
        share = (time.perf_counter() - started) / len(fresh)
        return [(msg.topic, share) for msg, _, _ in fresh]

    async def _handle_with_retries(
        self,
        topic: str,
        event: CloudEvent[Any],
        handler: EventHandler,
        partition: int | None = None,
    ) -> None:
        """Retry a failing handler; a storage outage is waited out (the partition pauses,
        nothing is dead-lettered for it), any other error is dead-lettered after retries."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handle_once(topic, event, handler, partition)
                return
            except DeadLetter:
                self._metrics.events_dead_lettered.labels(topic).inc()
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.events_failed.labels(topic).inc()
                if _is_storage_outage(exc):
                    log.warning("storage unavailable, retrying", topic=topic, error=str(exc))
                    await asyncio.sleep(min(5.0, self._backoff * 2 ** min(attempt, 7)))
                    continue
                log.exception("event handler failed", topic=topic, attempt=attempt)
                if attempt >= self._retries:
                    self._metrics.events_dead_lettered.labels(topic).inc()
                    raise DeadLetter(f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _handle_once(
        self,
        topic: str,
        event: CloudEvent[Any],
        handler: EventHandler,
        partition: int | None = None,
    ) -> None:
        async with self._uow() as uow:
            if partition is not None:
                uow.partitions[event.id] = partition
            if not await uow.claim(self.consumer, event.id):
                self._metrics.events_duplicate.labels(topic).inc()
                return
            await handler(event, uow, self._clock)
            await uow.commit()


def _topic_runs(batches: Sequence[Sequence[Message]]) -> list[list[Message]]:
    """A round's partition batches with each run of consecutive batches of one topic joined
    into one: its events go to the topic's batch handler in one call (one read and one
    write of each kind for the run, not one per partition). Only neighbours are joined, so
    no event moves past one of another topic; the order within each partition is kept."""
    runs: list[list[Message]] = []
    for msgs in batches:
        if runs and runs[-1][0].topic == msgs[0].topic:
            runs[-1].extend(msgs)
        else:
            runs.append(list(msgs))
    return runs


def _as_in_a_session_of_its_own(uow: UnitOfWork) -> None:
    """After a flush: the next handler starts as in a session of its own (same
    transaction), with no ORM object or session note left from the one before."""
    uow.session.expunge_all()
    uow.session.info.clear()


def _is_storage_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | ConnectionError | OSError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
