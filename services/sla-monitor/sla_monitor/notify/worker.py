"""The notification worker: delivers queued rows, retries failures with exponential
backoff (on the injected clock), gives up after ``max_attempts``.

Rows are read ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two instances never deliver the
same row at once; a delivery and its status change commit together, so a crash between
them can repeat one delivery (at least once; receivers dedupe on the delivery id)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import structlog

from leadpact.clock import Clock
from leadpact.messaging import UnitOfWork
from leadpact.tasks import cancel_and_wait, wait_at_most
from sla_monitor.notify import store
from sla_monitor.notify.channels import DeliveryError, send_email, send_slack, send_webhook
from sla_monitor.notify.queue import Notifier
from sla_monitor.settings import NotifySettings

log = structlog.get_logger("sla_monitor.notify")

FAR = timedelta(days=1)


def backoff(settings: NotifySettings, attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones: doubling, capped."""
    seconds = settings.backoff_seconds * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, settings.backoff_max_seconds))


class NotificationWorker:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        clock: Clock,
        settings: NotifySettings,
        notifier: Notifier,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        notifier.wake = self._wake.set

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._settings.timeout_seconds)
        self._task = asyncio.create_task(self._run(), name="notification-worker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                delivered = await self.deliver_due()
                if delivered >= self._settings.batch:
                    continue
                async with self._uow() as uow:
                    upcoming = await store.next_due(uow.session)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the worker
                log.exception("notification round failed")
                upcoming = None
            self._wake.clear()
            until = upcoming or self._clock.now() + FAR
            # Woken by a new row, by the clock reaching the next retry, or by the poll
            # (a row queued by another instance, or before its transaction committed).
            await wait_at_most(
                self._settings.poll_seconds, self._clock.sleep_until(until, self._wake)
            )

    async def deliver_due(self) -> int:
        """Try every due row once; returns how many were tried."""
        now = self._clock.now()
        async with self._uow() as uow:
            bind = uow.session.bind
            lock = bind is not None and bind.dialect.name != "sqlite"
            rows = await store.due(uow.session, now, self._settings.batch, lock=lock)
            if not rows:
                return 0
            results = await asyncio.gather(*(self._deliver(row, now) for row in rows))
            for row, error in zip(rows, results, strict=True):
                attempts = row.attempts + 1
                if error is None:
                    values = {
                        "status": store.SENT,
                        "attempts": attempts,
                        "sent_at": now,
                        "last_error": None,
                    }
                elif attempts >= self._settings.max_attempts:
                    values = {
                        "status": store.FAILED,
                        "attempts": attempts,
                        "last_error": error[:1000],
                    }
                else:
                    values = {
                        "attempts": attempts,
                        "last_error": error[:1000],
                        "next_attempt_at": now + backoff(self._settings, attempts),
                    }
                await store.settle(uow.session, row.id, values)
            await uow.commit()
        failed = [r for r in results if r is not None]
        if failed:
            log.warning(
                "notifications not delivered, will retry", count=len(failed), error=failed[0]
            )
        return len(rows)

    async def _deliver(self, row: store.NotificationRow, now: datetime) -> str | None:
        """Send one row; the error text, or None when delivered."""
        settings, client = self._settings, self._client
        assert client is not None, "start() first"
        try:
            async with asyncio.timeout(settings.timeout_seconds * 2):
                if row.channel == "slack" and settings.slack_webhook_url:
                    await send_slack(client, settings.slack_webhook_url, row)
                elif row.channel == "email":
                    await send_email(settings, row)
                elif row.channel == "webhook" and settings.webhook_url:
                    await send_webhook(
                        client, settings.webhook_url, settings.webhook_secret, row, now
                    )
                else:
                    return f"{row.channel}: channel not configured"
        except DeliveryError as exc:
            return str(exc)
        except TimeoutError:
            return f"{row.channel}: timed out"
        return None
