"""The bus interface shared by the memory and the Kafka implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

log = structlog.get_logger("leadpact.bus")

DLQ_SUFFIX = ".dlq"
ERROR_HEADER = "leadpact-error"
ORIGIN_TOPIC_HEADER = "leadpact-origin-topic"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class Message:
    topic: str
    key: str
    value: bytes
    partition: int = 0
    offset: int = 0
    headers: dict[str, str] = field(default_factory=dict)


MessageHandler = Callable[[Message], Awaitable[None]]
PartitionListener = Callable[[set[tuple[str, int]]], Awaitable[None]]
Delivered = Callable[[Message], Awaitable[None]]
"""Called once everything up to and including this message is handled (commit its offset)."""


class BatchHandler(Protocol):
    """A message handler that can also take several messages of one partition at once.

    ``handle_batch`` must be all or nothing: it either handles every message (one
    transaction) or raises with no effect; the bus then hands the messages to ``__call__``
    one by one (retries, dead-lettering), so a poison message is still isolated."""

    async def __call__(self, msg: Message) -> None: ...

    async def handle_batch(self, msgs: Sequence[Message]) -> None: ...


class RoundHandler(BatchHandler, Protocol):
    """A batch handler that can also take what one fetch brought from several partitions
    (one batch of consecutive messages each) at once: ``handle_round``, all or nothing
    like ``handle_batch``; when it raises, the bus hands each batch to ``handle_batch``."""

    async def handle_round(self, batches: Sequence[Sequence[Message]]) -> None: ...


class DeadLetter(Exception):
    """Raised by a handler for a message that can never succeed (invalid, poison):
    the bus moves it to the dead-letter topic at once instead of retrying."""


class Subscription(Protocol):
    group: str
    topics: Sequence[str]

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member currently owns."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages not yet handled on each owned partition, as far as this member knows."""

    async def stop(self) -> None: ...


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Return once the broker has the message (acks=all on Kafka)."""

    async def publish_batch(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        """Publish (topic, key, value) triples in order; return once the broker has all."""

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: MessageHandler,
        *,
        on_assigned: PartitionListener | None = None,
        on_revoked: PartitionListener | None = None,
    ) -> Subscription:
        """Deliver every message of ``topics`` to one member of ``group``, in order per
        partition. A message is committed after ``handler`` returns; on an exception the
        handler is retried, then the message goes to ``<topic>.dlq`` and is committed.

        A :class:`BatchHandler` gets what a partition has ready (up to the bus's
        ``batch_max``) in one ``handle_batch`` call, committed once after it; see
        :func:`deliver_batch`."""

    async def healthy(self) -> bool: ...


async def deliver(
    handler: MessageHandler,
    msg: Message,
    retries: int,
    dead_letter: Callable[[Message, str], Awaitable[None]],
    backoff: float = 0.05,
) -> bool:
    """Run ``handler`` on ``msg`` with retries; dead-letter it when it keeps failing.

    Returns True when the handler succeeded, False when the message was dead-lettered.
    Shared by both buses so they fail the same way.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            await handler(msg)
            return True
        except DeadLetter as exc:
            await dead_letter(msg, f"{type(exc).__name__}: {exc}")
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried then parked
            if attempt >= retries:
                await dead_letter(msg, f"{type(exc).__name__}: {exc}")
                return False
            await asyncio.sleep(backoff * 2 ** (attempt - 1))


async def deliver_batch(
    handler: MessageHandler,
    msgs: Sequence[Message],
    retries: int,
    dead_letter: Callable[[Message, str], Awaitable[None]],
    delivered: Delivered,
    backoff: float = 0.05,
) -> None:
    """Deliver one partition's ``msgs`` (consecutive, in offset order), then the offsets.

    Several messages and a :class:`BatchHandler`: one ``handle_batch`` call, and
    ``delivered`` once with the last message. When the batch raises anything (it had no
    effect), every message of it goes through :func:`deliver` one by one instead, with
    ``delivered`` after each: retries, waiting out an outage and dead-lettering work as for
    single messages, so a poison message is isolated and the others are handled once.
    One message, or a plain handler: :func:`deliver` per message, as always.
    Shared by both buses so they fail the same way.
    """
    handle_batch = getattr(handler, "handle_batch", None) if len(msgs) > 1 else None
    if handle_batch is not None:
        try:
            await handle_batch(msgs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: one by one decides
            log.warning(
                "batch failed, handling its messages one by one",
                topic=msgs[0].topic,
                partition=msgs[0].partition,
                offsets=f"{msgs[0].offset}-{msgs[-1].offset}",
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            await delivered(msgs[-1])
            return
    for msg in msgs:
        await deliver(handler, msg, retries, dead_letter, backoff)
        await delivered(msg)


async def deliver_round(
    handler: MessageHandler, batches: Sequence[Sequence[Message]], group: str
) -> bool:
    """Several partitions' batches (what one fetch round brought) to a
    :class:`RoundHandler` in one ``handle_round`` call. True when it took them all; False
    when there is nothing to hand over as a round (a plain handler, a single batch) or the
    round raised (it had no effect): the bus then hands each batch over apart
    (:func:`deliver_batch`). Shared by both buses so they fail the same way."""
    handle_round = getattr(handler, "handle_round", None)
    if handle_round is None or len(batches) < 2:
        return False
    try:
        await handle_round(batches)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure: partition by partition
        log.warning(
            "round failed, handling its partitions apart",
            group=group,
            partitions=len(batches),
            error=f"{type(exc).__name__}: {exc}",
        )
        return False
    return True


def dead_letter_headers(msg: Message, error: str) -> dict[str, str]:
    return {
        **msg.headers,
        ERROR_HEADER: error[:2000],
        ORIGIN_TOPIC_HEADER: msg.topic,
        "leadpact-origin-partition": str(msg.partition),
        "leadpact-origin-offset": str(msg.offset),
    }
