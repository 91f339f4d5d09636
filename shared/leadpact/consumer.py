"""Turns bus messages into calls of a service's event handlers, once per event.

A handler is a plain function ``async def on_x(event: CloudEvent[X], uow, clock) -> None``
listed in the service's ``EVENT_HANDLERS`` map. This module validates the envelope (invalid →
dead-letter topic), claims the event id in the inbox, runs the handler and commits, all in
one transaction: the bus commits the offset only after that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
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
    ) -> None:
        self.consumer = consumer
        self._handlers = {model.topic: h for model, h in handlers.items()}
        self._uow = uow_factory
        self._clock = clock
        self._metrics = metrics
        self._retries = retries
        self._backoff = backoff

    @property
    def topics(self) -> list[str]:
        return sorted(self._handlers)

    async def __call__(self, msg: Message) -> None:
        try:
            event = decode(msg.value)
        except InvalidEvent as exc:
            self._metrics.events_dead_lettered.labels(msg.topic).inc()
            log.warning("invalid event", topic=msg.topic, key=msg.key, error=str(exc))
            raise DeadLetter(str(exc)) from exc
        handler = self._handlers.get(event.topic)
        if handler is None or event.topic != msg.topic:
            raise DeadLetter(f"type: {event.type} does not belong on topic {msg.topic}")
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(event_id=event.id, lead_id=event.subject):
            await self._handle_with_retries(msg.topic, event, handler, msg.partition)
        self._metrics.events_consumed.labels(msg.topic).inc()
        self._metrics.event_handling.labels(msg.topic).observe(time.perf_counter() - started)

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
            uow.partition = partition
            if not await uow.claim(self.consumer, event.id):
                self._metrics.events_duplicate.labels(topic).inc()
                return
            await handler(event, uow, self._clock)
            await uow.commit()


def _is_storage_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | ConnectionError | OSError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
