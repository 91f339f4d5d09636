"""Outbound sync: customer changes pushed to a CRM and a billing system over HTTP.

Each change of a golden record writes one ``sync_log`` row per target in the transaction
that changed it (so nothing is lost and nothing is pushed for a change that rolled back).
A worker POSTs due rows with an ``Idempotency-Key`` header (the same for every retry of a
change), retries failures with exponential backoff on the injected clock, and marks a row
failed after the last attempt. An older pending push of the same customer and target is
superseded by a newer one: the receiver only needs the latest state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_sync import store
from crm_sync.metrics import CrmMetrics
from leadpact.clock import Clock
from leadpact.db import Database
from leadpact.tasks import cancel_and_wait, wait_at_most

log = structlog.get_logger("crm_sync.sync")


async def enqueue(
    session: AsyncSession,
    customer: store.Customer,
    fields: dict[str, Any],
    change_id: str,
    targets: tuple[str, ...],
    now: datetime,
) -> None:
    for target in targets:
        await session.execute(
            update(store.SyncEntry)
            .where(
                store.SyncEntry.customer_id == customer.id,
                store.SyncEntry.target == target,
                store.SyncEntry.status == "pending",
            )
            .values(status="superseded")
        )
        session.add(
            store.SyncEntry(
                target=target,
                customer_id=customer.id,
                idempotency_key=change_id,
                payload={
                    "customer_id": customer.id,
                    "change_id": change_id,
                    "fields": fields,
                    "sources": dict(customer.sources or {}),
                    "updated_at": now.isoformat(),
                },
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


def backoff(attempts: int, first: float, longest: float) -> timedelta:
    """Delay before attempt ``attempts + 1``: ``first``, doubled each time, capped."""
    return timedelta(seconds=min(longest, first * 2 ** max(0, attempts - 1)))


class SyncWorker:
    """Pushes due ``sync_log`` rows; sleeps on the clock until the next one is due."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        urls: dict[str, str],
        *,
        token: str = "",
        timeout: float = 5.0,
        max_attempts: int = 8,
        first_backoff: float = 2.0,
        longest_backoff: float = 600.0,
        poll: float = 5.0,
        metrics: CrmMetrics | None = None,
        batch: int = 50,
    ) -> None:
        self._db = db
        self._clock = clock
        self._urls = urls
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._first = first_backoff
        self._longest = longest_backoff
        self._poll = poll
        self._metrics = metrics
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if not self._urls:
            return
        self._client = httpx.AsyncClient(timeout=self._timeout)
        self._task = asyncio.create_task(self._run(), name="crm-sync-push")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        """Push what is due; then wait for the next retry on the clock, for a wake-up (a
        commit that queued pushes), or at most ``poll`` seconds of real time (changes
        committed by event handlers, or by another process)."""
        while True:
            self._wake.clear()
            try:
                await self.push_due()
                due = await self.next_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database down: try again later
                log.warning("sync worker failed, will retry", error=str(exc))
                due = None
            if due is not None and due <= self._clock.now():
                continue
            sleeper = (
                self._clock.sleep_until(due, self._wake) if due is not None else self._wake.wait()
            )
            await wait_at_most(self._poll, sleeper)

    async def next_due(self) -> datetime | None:
        async with self._db.session() as session:
            query = select(store.SyncEntry.next_attempt_at).where(
                store.SyncEntry.status == "pending"
            )
            found = (
                await session.execute(query.order_by(store.SyncEntry.next_attempt_at).limit(1))
            ).scalar()
        return _aware(found) if found is not None else None

    async def push_due(self) -> int:
        """Push every due row once; returns how many were attempted."""
        now = self._clock.now()
        async with self._db.session() as session:
            query = (
                select(store.SyncEntry)
                .where(store.SyncEntry.status == "pending", store.SyncEntry.next_attempt_at <= now)
                .order_by(store.SyncEntry.next_attempt_at, store.SyncEntry.id)
                .limit(self._batch)
            )
            if not self._db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.execute(query)).scalars())
            for row in rows:
                await self._push(row)
            await session.commit()
        return len(rows)

    async def _push(self, row: store.SyncEntry) -> None:
        url = self._urls.get(row.target)
        now = self._clock.now()
        row.attempts += 1
        if not url:
            row.status, row.last_error = "failed", f"target {row.target!r} has no URL"
            return
        assert self._client is not None
        headers = {**self._headers, "Idempotency-Key": row.idempotency_key}
        try:
            answer = await self._client.post(url, json=row.payload, headers=headers)
            row.last_status = answer.status_code
            ok = answer.is_success
            retryable = answer.status_code >= 500 or answer.status_code in (408, 409, 425, 429)
            error = None if ok else f"HTTP {answer.status_code}: {answer.text[:300]}"
        except httpx.HTTPError as exc:
            ok, retryable, error = False, True, f"{type(exc).__name__}: {exc}"
        row.last_error = error
        if ok:
            row.status, row.sent_at = "sent", now
            self._count(row.target, "sent")
        elif retryable and row.attempts < self._max_attempts:
            row.next_attempt_at = now + backoff(row.attempts, self._first, self._longest)
            self._count(row.target, "retry")
        else:
            row.status = "failed"
            self._count(row.target, "failed")
            log.warning("push failed for good", target=row.target, customer=row.customer_id)

    def _count(self, target: str, result: str) -> None:
        if self._metrics is not None:
            self._metrics.pushes.labels(target, result).inc()


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
