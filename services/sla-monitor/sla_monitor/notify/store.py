"""The notification queue: one row per message and channel, delivered by the worker.

``dedup_key`` is unique: the same message for the same lead, channel and recipient is
queued once however often the event that causes it is handled."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import JSON, Index, Integer, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from leadpact.db import UtcDateTime, dialect_name, insert_or_skip
from sla_monitor.store import Base

PENDING, SENT, FAILED = "pending", "sent", "failed"


class NotificationRow(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


_NOTIFICATIONS = cast(Table, NotificationRow.__table__)


async def enqueue(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Queue deliveries, in order, in one statement; returns how many were queued (a
    dedup key queued already is skipped)."""
    if not rows:
        return 0
    params = [
        {"last_error": None, "sent_at": None, **values, "status": PENDING, "attempts": 0}
        for values in rows
    ]
    if len(params) == 1:
        stmt = insert_or_skip(_NOTIFICATIONS, dialect_name(session), "dedup_key")
        result = await session.execute(stmt, params[0])
        return int(result.rowcount)  # type: ignore[attr-defined]
    result = await session.execute(_enqueue_returning(dialect_name(session)), params)
    return len(result.all())


@cache
def _enqueue_returning(dialect: str) -> Any:
    """The queue insert for several rows, returning one id per row queued (the row count
    of a many-rows insert is not reported alike by every driver)."""
    stmt = insert_or_skip(_NOTIFICATIONS, dialect, "dedup_key")
    return stmt.returning(_NOTIFICATIONS.c.id)


async def due(
    session: AsyncSession, now: datetime, limit: int, *, lock: bool
) -> Sequence[NotificationRow]:
    """Pending deliveries whose time has come, oldest first; locked and skipped by other
    workers on PostgreSQL, so two instances never send the same row at once."""
    query = (
        select(NotificationRow)
        .where(NotificationRow.status == PENDING, NotificationRow.next_attempt_at <= now)
        .order_by(NotificationRow.next_attempt_at, NotificationRow.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    rows = await session.scalars(query)
    return rows.all()


async def next_due(session: AsyncSession) -> datetime | None:
    found: datetime | None = await session.scalar(
        select(NotificationRow.next_attempt_at)
        .where(NotificationRow.status == PENDING)
        .order_by(NotificationRow.next_attempt_at)
        .limit(1)
    )
    return found


async def settle(session: AsyncSession, row_id: int, values: dict[str, Any]) -> None:
    await session.execute(
        update(NotificationRow).where(NotificationRow.id == row_id).values(**values)
    )


async def of_lead(session: AsyncSession, lead_id: str, limit: int) -> Sequence[NotificationRow]:
    rows = await session.scalars(
        select(NotificationRow)
        .where(NotificationRow.lead_id == lead_id)
        .order_by(NotificationRow.id)
        .limit(limit)
    )
    return rows.all()


async def latest(
    session: AsyncSession, status: str | None, limit: int
) -> Sequence[NotificationRow]:
    query = select(NotificationRow)
    if status is not None:
        query = query.where(NotificationRow.status == status)
    rows = await session.scalars(query.order_by(NotificationRow.id.desc()).limit(limit))
    return rows.all()
