"""A background loop must stop when it is cancelled, even if it was woken at that moment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from leadpact.tasks import cancel_and_wait, wait_at_most


async def woken_as_it_is_cancelled(wait: Callable[[asyncio.Event], Awaitable[Any]]) -> bool:
    """Wake a waiting loop and cancel it in the same loop iteration, as a commit's wake-up
    and a service's shutdown can; True when the loop stopped."""
    wake = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while rounds < 3:  # bounded, so that a lost cancellation ends the test
            rounds += 1
            await wait(wake)
            wake.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop waits
    wake.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return task.cancelled()


async def test_a_worker_woken_as_it_is_cancelled_stops() -> None:
    # With ``asyncio.wait_for`` in wait_at_most this fails on Python 3.11: the loop runs on.
    assert await woken_as_it_is_cancelled(lambda wake: wait_at_most(5, wake.wait()))


async def test_running_out_of_time_is_not_an_error() -> None:
    await wait_at_most(0.01, asyncio.Event().wait())
    await cancel_and_wait(None)
