"""Background tasks: services and the library run loops beside the API (relay, consumers,
timers, outbound pushes) and stop them the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:  # leadpact.clock imports this module
    from leadpact.clock import Clock

log = structlog.get_logger("leadpact.tasks")


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and return once it has finished unwinding (its ``finally`` blocks ran)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_at_most(seconds: float, awaitable: Awaitable[Any]) -> None:
    """Await ``awaitable`` for at most ``seconds``; running out of time is not an error.

    Not ``asyncio.wait_for``: on Python 3.11 it drops a cancellation that arrives in the
    same loop iteration as the awaited result (CPython gh-86296), so a worker woken just as
    it is stopped would loop on and ``cancel_and_wait`` never return (seen: a test teardown
    hung with the outbox relay still polling)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await awaitable


async def run_cycles(
    cycle: Callable[[], Awaitable[None]], clock: Clock, pause: timedelta, name: str
) -> None:
    """Run ``cycle`` again and again until cancelled. A cycle that fails (a database
    hiccup) is logged and the next one starts after ``pause`` of clock time: a timer
    worker that died would silently stop breaching or recycling leads."""
    while True:
        try:
            await cycle()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cycle failed", worker=name)
            await clock.sleep_until(clock.now() + pause)
