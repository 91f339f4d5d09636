"""A background loop must stop when it is cancelled, even if it was woken at that moment,
and must not stop because one of its cycles failed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from leadpact.clock import ManualClock
from leadpact.tasks import cancel_and_wait, run_cycles, wait_at_most
from tests.fixtures.waiting import eventually


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


async def test_a_failed_cycle_is_retried_after_the_pause_and_the_worker_runs_on() -> None:
    clock = ManualClock()
    cycles: list[str] = []

    async def cycle() -> None:
        cycles.append("failed" if not cycles else "ran")
        if len(cycles) == 1:
            raise ConnectionError("database restarting")
        await asyncio.Event().wait()  # the second cycle runs until the worker is stopped

    worker = asyncio.create_task(run_cycles(cycle, clock, timedelta(seconds=5), "test"))
    await eventually(lambda: cycles == ["failed"])
    clock.advance(4)
    await asyncio.sleep(0)
    assert cycles == ["failed"]  # still pausing: 5 s of clock time

    clock.advance(1)
    await eventually(lambda: cycles == ["failed", "ran"])
    assert not worker.done()
    await cancel_and_wait(worker)
    assert worker.cancelled()
