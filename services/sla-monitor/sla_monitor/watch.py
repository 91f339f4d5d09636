"""The deadline watch: sleeps until the nearest due or at-risk time, then acts on what is due.

The heap only decides *when* to wake; what to breach or warn about is read from the store,
so a deadline armed by another process, or one whose wake-up was missed, is still caught
at the next wake. Each breach is a conditional ``UPDATE ... WHERE status = 'open'`` in the
same transaction as the ``sla.breached`` outbox row, so two watches racing on the same
deadline (two replicas, a restart) emit it once.

Ownership: a deadline records the partition of the ``lead.scored`` message that armed it,
and a watch wired to the consumer group (:meth:`partitions_assigned`,
:meth:`partitions_revoked`) only loads and scans the deadlines of the partitions its
instance owns, plus the unpartitioned ones (armed before partitions were recorded). Two
replicas thus split the work as they split the events; on a rebalance the new owner
reloads at once and breaches what is already due. The conditional update stays the
safety net for the moment both think they own a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from leadpact.clock import Clock
from leadpact.events import LeadScored, SlaAtRisk
from leadpact.messaging import UnitOfWork
from leadpact.tasks import cancel_and_wait, run_cycles
from sla_monitor import store
from sla_monitor.breach import breach_event, count_breach, owning_teams
from sla_monitor.domain import TIMED_CLAUSES, answerable_team
from sla_monitor.metrics import SlaMetrics

if TYPE_CHECKING:
    from sla_monitor.routing.escalation import Escalator

log = structlog.get_logger("sla_monitor.watch")

ARM_GRACE = timedelta(seconds=1)

OWNING_TOPIC = LeadScored.topic
"""The topic whose partitions own deadlines: a deadline is armed by a ``lead.scored``
delivery and records its partition."""


class DeadlineWatch:
    """Background worker (``start``/``stop``) of the sla-monitor."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        clock: Clock,
        metrics: SlaMetrics,
        *,
        horizon: timedelta = timedelta(minutes=1),
        batch: int = 500,
        escalator: Escalator | None = None,
        partitions: set[int] | None = None,
    ) -> None:
        """``partitions``: the ``lead.scored`` partitions owned at first; ``None`` watches
        every deadline (a watch outside a consumer group), an empty set only the
        unpartitioned ones until the group assigns some."""
        self._uow = uow
        self._clock = clock
        self._metrics = metrics
        self._horizon = horizon
        self._batch = batch
        self._escalator = escalator
        self._heap: list[datetime] = []
        self._loaded_until: datetime | None = None
        self._wake = asyncio.Event()
        self._sleeping_until: datetime | None = None  # None while a cycle runs
        self._task: asyncio.Task[None] | None = None
        self._partitions = None if partitions is None else set(partitions)
        self._replan = False  # ownership changed: reload before sleeping again
        for part in self._partitions or ():
            self._metrics.deadline_partitions.labels(str(part)).set(1)

    @property
    def partitions(self) -> frozenset[int] | None:
        """The ``lead.scored`` partitions whose deadlines this watch looks after (None:
        all)."""
        return None if self._partitions is None else frozenset(self._partitions)

    async def partitions_assigned(self, assigned: set[tuple[str, int]]) -> None:
        """The consumer group gave this instance partitions: watch their deadlines from
        now on. Only records and wakes (the bus waits for this listener during a
        rebalance); the watch loads them and breaches what is already due on its next
        cycle."""
        gained = {part for topic, part in assigned if topic == OWNING_TOPIC}
        if not gained:
            return
        self._partitions = (self._partitions or set()) | gained
        for part in gained:
            self._metrics.deadline_partitions.labels(str(part)).set(1)
        log.info("deadline partitions assigned", gained=sorted(gained), owned=self._owned())
        self._replan_now()

    async def partitions_revoked(self, revoked: set[tuple[str, int]]) -> None:
        """Partitions left this instance: forget their deadlines (their new owner takes
        them from the store)."""
        lost = {part for topic, part in revoked if topic == OWNING_TOPIC}
        if not lost:
            return
        self._partitions = (self._partitions or set()) - lost
        for part in lost:
            with contextlib.suppress(KeyError):  # never counted as owned
                self._metrics.deadline_partitions.remove(str(part))
        log.info("deadline partitions revoked", lost=sorted(lost), owned=self._owned())
        self._replan_now()

    @property
    def sleeps_until(self) -> datetime | None:
        """When the watch next wakes by itself; None while it scans the store."""
        return self._sleeping_until

    def _owned(self) -> list[int] | str:
        return "all" if self._partitions is None else sorted(self._partitions)

    def _replan_now(self) -> None:
        self._replan = True
        self._wake.set()

    def armed(self, due_at: datetime) -> None:
        """A deadline (or its at-risk time) was armed: remember it when near, and wake
        the watch only if it sleeps past it.

        Called before the arming transaction commits, so a time already past is looked at
        again a moment later, when its row is visible. Every MQL arms a deadline, so a
        wake per arming would cost a scan of the store per lead under load; a cycle that
        is running sees the heap when it plans its sleep."""
        due_at = max(due_at, self._clock.now() + ARM_GRACE)
        if self._loaded_until is None or due_at <= self._loaded_until:
            heapq.heappush(self._heap, due_at)
        if self._sleeping_until is None or due_at < self._sleeping_until:
            self._wake.set()

    async def start(self) -> None:
        self._loaded_until = None  # rebuild from the store
        self._task = asyncio.create_task(self._run(), name="sla-deadline-watch")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await run_cycles(self._cycle, self._clock, timedelta(seconds=1), "sla-deadline-watch")

    async def _cycle(self) -> None:
        self._metrics.watch_cycles.inc()
        now = self._clock.now()
        if self._replan or self._loaded_until is None or now >= self._loaded_until:
            self._replan = False  # cleared first: a change during the reload replans again
            await self._reload(now)
        while self._heap and self._heap[0] <= now:
            heapq.heappop(self._heap)
        assert self._loaded_until is not None
        warned = await self.warn_due(now)
        if await self.breach_due(now) >= self._batch or warned >= self._batch:
            return  # more are due: go round again without sleeping
        wake_at = min(self._heap[0], self._loaded_until) if self._heap else self._loaded_until
        self._wake.clear()
        if self._replan:
            return  # ownership changed while this cycle ran: reload first
        self._sleeping_until = wake_at
        try:
            await self._clock.sleep_until(wake_at, self._wake)
        finally:
            self._sleeping_until = None

    async def _reload(self, now: datetime) -> None:
        """Rebuild the heap from the store: the open deadlines of the owned partitions
        within the horizon."""
        until = now + self._horizon
        owned = self.partitions
        async with self._uow() as uow:
            times = await store.open_wake_times(
                uow.session, until, TIMED_CLAUSES, self._batch, owned
            )
            self._metrics.open_deadlines.set(await store.open_count(uow.session, owned))
        if len(times) >= self._batch:
            until = times[-1]  # too many near: watch the nearest ones, reload after them
        self._heap = times
        heapq.heapify(self._heap)
        self._loaded_until = until

    async def breach_due(self, now: datetime) -> int:
        """Breach every open deadline due by ``now``; returns how many were looked at."""
        changed: list[tuple[store.DeadlineRow, str]] = []
        fresh: list[datetime] = []
        async with self._uow() as uow:
            rows = await store.overdue(
                uow.session, now, TIMED_CLAUSES, self._batch, self.partitions
            )
            # Read before the escalator may hand a lead to another team in this commit.
            teams = await owning_teams(uow.session, (row.lead_id for row in rows))
            for row in rows:
                team = answerable_team(row.clause, teams.get(row.lead_id))
                if await store.mark_breached(uow.session, row.id, now, team):
                    changed.append((row, team))
                    uow.emit(breach_event(row, now, team), row.contract_version)
                    if self._escalator is not None:  # notify, maybe reassign: same commit
                        fresh += await self._escalator.breached(uow, row, now)
            looked_at = len(rows)
            counted = [
                (row.lead_id, row.clause, row.round, row.partition, row.source, team, row.due_at)
                for row, team in changed
            ]
            await uow.commit()
        for wake_at in fresh:  # a fresh deadline after a reassignment
            self.armed(wake_at)
        # Counted after the commit, and only for rows this watch changed: never twice.
        for lead_id, clause, round_, partition, source, team, due_at in counted:
            count_breach(self._metrics, clause, source, team, due_at, now)
            # One line per breach: which instance (the process) breached which lead of
            # which partition is what an operator asks after a rebalance.
            log.info(
                "sla breached",
                lead_id=lead_id,
                clause=clause,
                round=round_,
                partition=partition,
                team=team,
            )
        return looked_at

    async def warn_due(self, now: datetime) -> int:
        """Send ``sla.at_risk`` once for every open deadline past its at-risk time."""
        warned: list[str] = []
        async with self._uow() as uow:
            rows = await store.at_risk(
                uow.session, now, TIMED_CLAUSES, self._batch, self.partitions
            )
            for row in rows:
                if await store.mark_warned(uow.session, row.id, now):
                    warned.append(row.clause)
                    remaining = max(0.0, (row.due_at - now).total_seconds())
                    uow.emit(
                        SlaAtRisk(
                            lead_id=row.lead_id,
                            clause=row.clause,  # type: ignore[arg-type]
                            owner=row.owner,
                            deadline=row.due_at,
                            remaining_seconds=remaining,
                        ),
                        row.contract_version,
                    )
                    if self._escalator is not None:
                        await self._escalator.at_risk(uow, row, now)
            looked_at = len(rows)
            await uow.commit()
        for clause in warned:
            self._metrics.at_risk.labels(clause).inc()
        return looked_at
