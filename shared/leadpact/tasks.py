"""Background tasks: services and the library run loops beside the API (relay, consumers,
timers, outbound pushes) and stop them the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any


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
