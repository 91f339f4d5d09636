"""The recycle worker: rejected leads with a recyclable reason go back to nurture
(``lead.recycled``) once the contract's delay has passed, exactly once.

What is due is read from the store (``fb_recycles``, indexed by status and due time); the
worker only keeps hints of *when* to wake. Each recycle is a conditional ``UPDATE … WHERE
status = 'pending'`` in the transaction of its outbox row, so two workers (replicas, a
restart) emit it once.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from feedback import store
from feedback.metrics import FeedbackMetrics
from leadpact.clock import Clock
from leadpact.events import LeadRecycled
from leadpact.messaging import UnitOfWork
from leadpact.tasks import cancel_and_wait, run_cycles

log = structlog.get_logger("feedback.recycle")

GRACE = timedelta(seconds=1)


class RecycleWorker:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        clock: Clock,
        metrics: FeedbackMetrics,
        *,
        horizon: timedelta = timedelta(hours=1),
        batch: int = 500,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._metrics = metrics
        self._horizon = horizon
        self._batch = batch
        self._hints: list[datetime] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def scheduled(self, due_at: datetime) -> None:
        """A recycle was scheduled (not yet committed): look again at its time."""
        heapq.heappush(self._hints, max(due_at, self._clock.now() + GRACE))
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feedback-recycle")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await run_cycles(self._cycle, self._clock, GRACE, "feedback-recycle")

    async def _cycle(self) -> None:
        now = self._clock.now()
        self._wake.clear()
        if await self.recycle_due(now) >= self._batch:
            return
        async with self._uow() as uow:
            upcoming = await store.next_recycle(uow.session)
        while self._hints and self._hints[0] <= now:
            heapq.heappop(self._hints)
        candidates = [now + self._horizon, *self._hints[:1]]
        if upcoming is not None:
            candidates.append(upcoming)
        wake_at = min(candidates)
        if wake_at <= now:
            return  # committed meanwhile: go round again
        await self._clock.sleep_until(wake_at, self._wake)

    async def recycle_due(self, now: datetime) -> int:
        """Emit ``lead.recycled`` for every pending recycle due by ``now``; returns how many
        rows were looked at."""
        done: list[str] = []
        async with self._uow() as uow:
            rows = await store.due_recycles(uow.session, now, self._batch)
            for row in rows:
                if await store.mark_recycled(uow.session, row.id, now):
                    done.append(row.reason)
                    uow.emit(
                        LeadRecycled(lead_id=row.lead_id, reason=row.reason, recycled_at=now),
                        row.contract_version,
                    )
            await uow.commit()
        for reason in done:  # counted after commit, only for rows this worker changed
            self._metrics.recycled.labels(reason).inc()
        if done:
            log.info("leads recycled", count=len(done))
        return len(rows)
