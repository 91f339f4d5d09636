"""Async SQLAlchemy for SQLite (aiosqlite) and PostgreSQL (asyncpg) from the same models."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Self

from sqlalchemy import DateTime, Table, event, exc, pool, text
from sqlalchemy.dialects import postgresql, registry, sqlite
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is timezone-aware UTC when read back, on SQLite too (which forgets
    the offset), and that refuses naive datetimes on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _no_wait() -> None:
    return None


class _LoopCursor(sqlite3.Cursor):
    # AsyncConnection.execute refuses a driver that never awaited (it takes that for a sync
    # driver by mistake); one greenlet switch per statement satisfies it, without a thread.
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        await_(_no_wait())
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        await_(_no_wait())
        return super().executemany(sql, seq_of_parameters)

    async def _async_soft_close(self) -> None:
        """Async results ask the driver to buffer rows before the loop moves on; a sqlite3
        cursor is read on this same thread when asked, so there is nothing to buffer."""


class _LoopConnection(sqlite3.Connection):
    def cursor(self, factory: type[sqlite3.Cursor] = _LoopCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


class LoopSQLiteDialect(SQLiteDialect_pysqlite):
    """SQLite called directly on the event loop's thread, behind the asyncio API.

    aiosqlite runs every statement on a worker thread and wakes the loop with the result:
    two thread switches per statement, which on a busy 2-core machine cost milliseconds
    each while the statement itself takes microseconds (measured in ``bench/e2e``; see the
    README). A local SQLite file in WAL mode answers fast enough to be called inline. The
    price: a statement waiting on another *process's* write lock blocks the loop, so
    ``Database`` keeps one connection per file and process (sessions queue for it on the
    loop instead of contending for SQLite's lock)."""

    driver = "leadpact"
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool


registry.register("sqlite.leadpact", __name__, "LoopSQLiteDialect")


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, object] = {"echo": echo}
        if self.is_sqlite:
            in_memory = parsed.database in (None, "", ":memory:")
            if not in_memory:
                Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
                # One connection: see LoopSQLiteDialect. Sessions wait for it in turn.
                kwargs.update(pool_size=1, max_overflow=0, pool_timeout=300)
            kwargs["connect_args"] = {
                "timeout": 30,
                "check_same_thread": False,
                "factory": _LoopConnection,
            }
            parsed = parsed.set(drivername="sqlite+leadpact")
        else:
            # LIFO: under load the same few connections stay in use (and unpinged), the
            # rest sit idle and are pinged when lent again (see PingWhenIdle).
            kwargs.update(pool_size=10, max_overflow=10, pool_use_lifo=True)
        self.engine: AsyncEngine = create_async_engine(parsed, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine.pool, "checkin", PlannerStatistics())
        else:
            idle = PingWhenIdle(self.engine.dialect)
            event.listen(self.engine.sync_engine.pool, "checkin", idle.checkin)
            event.listen(self.engine.sync_engine.pool, "checkout", idle.checkout)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets the API write while the relay and consumers read; NORMAL sync is durable
    # across process crashes in WAL mode, which is what a 2xx promises in embedded mode.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA analysis_limit=1000")  # bounds each ANALYZE of PlannerStatistics
    cursor.close()


class PingWhenIdle:
    """``pool_pre_ping``, but only for a connection that sat in the pool longer than
    ``idle_seconds``: one round trip before every session was a visible share of a busy
    service's work (the outbox relay's pass: one of its five round trips).

    A connection that the database dropped while it sat idle (a restart, an outage) is
    replaced before anyone uses it, as with ``pool_pre_ping``. A connection lost while in
    use fails that use; SQLAlchemy then invalidates it and every connection of the pool
    older than the failure, so the next ones are new. A connection reused within the idle
    time is not pinged: under load they all are, which is when the ping costs most."""

    def __init__(self, dialect: Dialect, idle_seconds: float = 1.0) -> None:
        self.dialect = dialect
        self.idle_seconds = idle_seconds

    def checkin(self, dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    def checkout(self, dbapi_conn: Any, record: Any, proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned <= self.idle_seconds:
            return
        try:
            alive = self.dialect.do_ping(dbapi_conn)
        except Exception:  # noqa: BLE001 - any failure to answer: replace the connection
            alive = False
        if not alive:
            # The pool discards this connection and lends a new one (up to 3 attempts).
            raise exc.DisconnectionError("connection dropped while idle")


class PlannerStatistics:
    """Keeps SQLite's planner statistics current: ``PRAGMA optimize`` every ``every``
    returns of a connection to the pool.

    Without statistics SQLite chose the ``(status, …)`` index over the ``(lead_id, clause)``
    key for updates such as "this lead's open outcome deadline", scanning every open
    deadline each time: ``bench.routing`` slowed as the table grew (acceptances at 20,000
    leads took most of the run). PostgreSQL keeps its own statistics (autovacuum)."""

    def __init__(self, every: int = 1000) -> None:
        self.every = every
        self._returned = 0

    def __call__(self, dbapi_conn: sqlite3.Connection | None, _record: object) -> None:
        self._returned += 1
        if dbapi_conn is None or self._returned % self.every:
            return
        # A plain sqlite3 cursor: this runs outside the async call that _LoopCursor needs.
        cursor = dbapi_conn.cursor(sqlite3.Cursor)
        try:
            cursor.execute("PRAGMA optimize")
        finally:
            cursor.close()


def dialect_insert(dialect: str) -> Any:
    """The dialect's own ``insert`` (the one with ``on_conflict_do_nothing``/``_update``):
    PostgreSQL's for ``"postgresql"``, SQLite's otherwise. Services run on either."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@cache
def insert_or_skip(table: Table, dialect: str, *key: str) -> Any:
    """``INSERT … ON CONFLICT [(key)] DO NOTHING`` into ``table`` for ``dialect``, built once
    and run with parameters (its columns are those of the parameters): building the
    statement for every call was a visible share of an event handler's CPU time."""
    return dialect_insert(dialect)(table).on_conflict_do_nothing(index_elements=list(key) or None)


def dialect_name(session: AsyncSession) -> str:
    """``"postgresql"`` or ``"sqlite"``: the database ``session`` is bound to."""
    return session.bind.dialect.name if session.bind else "sqlite"


def insert_for(session: AsyncSession) -> Any:
    """:func:`dialect_insert` for the database ``session`` is bound to."""
    return dialect_insert(dialect_name(session))
