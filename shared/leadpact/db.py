"""Async SQLAlchemy for SQLite (aiosqlite) and PostgreSQL (asyncpg) from the same models."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Self

import structlog
from sqlalchemy import (
    ARRAY,
    JSON,
    DateTime,
    Row,
    Table,
    Text,
    bindparam,
    cast,
    event,
    exc,
    func,
    pool,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, registry, sqlite
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, Connection, CursorResult, Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_
from sqlalchemy.util.concurrency import in_greenlet

log = structlog.get_logger("leadpact.db")


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
    # Outside a greenlet (CoreConnection's inline statements) there is nothing to satisfy.
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        if in_greenlet():
            await_(_no_wait())
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        if in_greenlet():
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
        self.checkpoints: WalCheckpoints | None = None
        kwargs: dict[str, object] = {"echo": echo}
        if self.is_sqlite:
            in_memory = parsed.database in (None, "", ":memory:")
            if not in_memory:
                Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
                self.checkpoints = WalCheckpoints(str(parsed.database))
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
            if self.checkpoints is not None:
                event.listen(self.engine.sync_engine.pool, "checkin", self.checkpoints)
        else:
            idle = PingWhenIdle(self.engine.dialect)
            event.listen(self.engine.sync_engine.pool, "checkin", idle.checkin)
            event.listen(self.engine.sync_engine.pool, "checkout", idle.checkout)
        self.sessionmaker = async_sessionmaker(self.engine, class_=Session, expire_on_commit=False)

    def session(self) -> Session:
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
        if self.checkpoints is not None:
            self.checkpoints.close()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets the API write while the relay and consumers read; NORMAL sync is durable
    # across process crashes in WAL mode, which is what a 2xx promises in embedded mode.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Checkpoints are WalCheckpoints' job, on a thread; a commit on the loop runs one only if
    # the WAL outgrew that (the thread fell behind), so the WAL stays bounded either way.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WalCheckpoints.fallback_pages}")
    cursor.execute("PRAGMA analysis_limit=1000")  # bounds each ANALYZE of PlannerStatistics
    cursor.close()


class WalCheckpoints:
    """Checkpoints a SQLite database's WAL on a thread of its own, every ``every`` returns
    of a connection to the pool.

    By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages:
    it copies the pages into the database file and fsyncs both, 5-45 ms on this VM's disk,
    and with ``LoopSQLiteDialect`` that commit runs on the event loop, which every service
    of the embedded mode shares. Those commits were nearly all the commits over 10 ms in an
    e2e run at 10 leads/s (7-16 per 8 s; 1 with checkpoints off). A PASSIVE checkpoint
    waits for no reader or writer and the sqlite3 module lets go of the GIL while it runs,
    so on a thread it costs the loop nothing. Durability is unchanged: what a commit wrote
    is in the WAL either way (``synchronous=NORMAL``), and a checkpoint fsyncs the same.
    """

    fallback_pages = 4_000
    """The loop's own checkpoint, as SQLite's default (1,000) but later: it keeps the WAL
    bounded (16 MB of 4 KiB pages) whatever happens to the thread. Under sustained writes
    it is still needed: the WAL restarts from its beginning only once a checkpoint caught
    up with the last commit, which a thread racing the loop's commits seldom does; it then
    finds most pages already copied by the thread, and runs 4x less often than SQLite's."""

    def __init__(self, path: str, every: int = 100) -> None:
        self.path = path
        self.every = every
        self.done = 0
        self._returned = 0
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future[None] | None = None
        self._conn: sqlite3.Connection | None = None

    def __call__(self, _dbapi_conn: object, _record: object) -> None:
        self._returned += 1
        if self._returned % self.every or (self._running and not self._running.done()):
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._running = self._executor.submit(self.checkpoint)

    def checkpoint(self, rounds: int = 3) -> None:
        """PASSIVE checkpoints on this object's own connection (opened on first use) until
        one finds nothing new to copy, ``rounds`` at most.

        The next writer starts the WAL over only if the last checkpoint copied every frame:
        commits made while a round ran are copied by the next round (cheap when there are
        none: SQLite then neither copies nor syncs), so a pause between commits is enough."""
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.path, check_same_thread=False)
            seen = -1
            for _ in range(rounds):
                # fetchall: an open statement would keep a read mark; the WAL could not restart.
                [(_busy, frames, _copied)] = self._conn.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).fetchall()
                if frames == seen:
                    break
                seen = frames
        except sqlite3.Error as exc:  # the loop's fallback checkpoint still bounds the WAL
            log.warning("sqlite checkpoint failed", path=self.path, error=str(exc))
            return
        self.done += 1

    def wait(self) -> None:
        """Until the checkpoint in flight, if any, has finished (tests, shutdown)."""
        if self._running is not None:
            self._running.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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


Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
OnConflict = Callable[[Any], Any]
"""Adds an ``ON CONFLICT`` clause to a dialect's insert (PostgreSQL's or SQLite's, which
have the same ``on_conflict_do_update``); one object per clause, as statements are cached
by it."""
Rows = CursorResult[*tuple[Any, ...]]
"""A statement's result, rows of any shape (as ``session.execute`` returns)."""


class CoreConnection:
    """The connection of a session's transaction, for Core statements (built on ``Table``
    objects, most of them prebuilt): the same statement in the same transaction as
    ``session.execute``, for about half of its CPU on SQLite (about the same on PostgreSQL,
    where the driver's round trip is most of a statement's CPU).

    Measured per statement (notes/issue-9-statement-cost.md), ``session.execute`` on SQLite
    pays the ORM session's dispatch (~20 %), a greenlet per statement (~35 %) and Core's
    compile-cache lookup, execution context and result (~30 %); SQLite itself is ~10 %.
    This skips the first always and, on SQLite with :class:`LoopSQLiteDialect`, the
    second: that dialect never waits on anything, so its statements run inline on the event
    loop's thread, as the synchronous ``Connection`` they are underneath. On PostgreSQL
    (asyncpg) they still go through a greenlet, the ``AsyncConnection``'s.

    What stays as with ``session.execute``: the transaction (the session's own: its commit
    and rollback take these statements along), the flush of pending ORM changes before each
    statement, and the result. An ORM-enabled statement (on mapped classes or their
    attributes) goes to ``session.execute`` itself: it may load ORM objects. Valid for one
    transaction: take it from :func:`core_connection` (kept per transaction)."""

    __slots__ = ("_async", "_inline", "_session", "_sync", "dialect", "transaction")

    def __init__(
        self, session: AsyncSession, connection: AsyncConnection, transaction: SessionTransaction
    ) -> None:
        self._session = session
        self.transaction = transaction
        self._async = connection
        self._sync: Connection = connection.sync_connection  # type: ignore[assignment]
        self.dialect: Dialect = connection.dialect
        self._inline = isinstance(self.dialect, LoopSQLiteDialect)

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Rows:
        """``statement`` with ``parameters`` (a list of them: executemany, or one
        multi-row insert); a fully readable result, as ``session.execute``'s."""
        # ``_propagate_attrs`` holds the ORM plugin of a statement on mapped entities: the
        # marker ``Session.execute`` itself goes by to flush and load ORM objects.
        owner = self._session
        if statement._propagate_attrs.get("compile_state_plugin") == "orm":
            return await owner.execute(statement, parameters)  # type: ignore[return-value]
        # Session.execute flushes the session before every statement, Core ones too (the
        # ORM objects added or changed so far are in the database when a query reads it).
        session = owner.sync_session
        if self._inline:
            if session.autoflush:
                session.flush()  # returns at once when there is nothing to flush
            return self._sync.execute(statement, parameters)
        if session.autoflush and (session.new or session.dirty or session.deleted):
            await owner.flush()
        return await self._async.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Parameters = None) -> Any:
        """The first column of the first row, None when there is no row."""
        return (await self.execute(statement, parameters)).scalar()

    async def insert_rows(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        skip_conflicts_on: tuple[str, ...] | None = None,
        returning: tuple[str, ...] = (),
        on_conflict: OnConflict | None = None,
    ) -> Sequence[Row[*tuple[Any, ...]]]:
        """Insert ``rows`` (each with the same keys) into ``table``, in order; with
        ``skip_conflicts_on`` (a unique key's columns, ``()`` for any), ``ON CONFLICT DO
        NOTHING``; with ``on_conflict``, the clause it adds to the dialect's insert (an
        upsert: its ``excluded`` columns are the row's). Returns the ``returning`` columns
        of the rows inserted (none without). An upsert's rows must not share a value of its
        conflict key: PostgreSQL does not update a row twice in one statement.

        On PostgreSQL several rows go as one ``INSERT … SELECT … FROM unnest(…)``, a bound
        array per column: one statement whose shape depends only on the columns. An
        executemany sent a bind and an execute per row (crm-sync's attributes: 49 µs of
        PostgreSQL time each), and with ``RETURNING`` it becomes one multi-row ``VALUES``
        whose text changes with the row count, so each count was parsed and prepared again
        (sla-monitor's deadlines: 1.2-1.6 ms a parse). Elsewhere, and when a column left out
        has a Python-side default (which an ``INSERT … SELECT`` would not apply), an
        executemany."""
        if not rows:
            return []
        columns = tuple(rows[0])
        if any(row.keys() != rows[0].keys() for row in rows):
            # An executemany would take the first row's columns and drop the others' extras.
            raise ValueError(f"rows for {table.name} differ in their columns")
        dialect = self.dialect.name
        if dialect == "postgresql" and len(rows) > 1 and _as_arrays(table, columns):
            as_text = tuple(name for name in columns if _is_json(table.c[name].type))
            statement = _rows_insert(
                table, dialect, skip_conflicts_on, returning, on_conflict, columns, as_text
            )
            params: Parameters = {
                name: [_json_text(row[name], table.c[name].type, self.dialect) for row in rows]
                if name in as_text
                else [row[name] for row in rows]
                for name in columns
            }
        else:
            statement = _rows_insert(table, dialect, skip_conflicts_on, returning, on_conflict)
            params = list(rows)
        result = await self.execute(statement, params)
        return result.all() if returning else []


_ROW_NUMBER = "leadpact_row_number"


def _as_arrays(table: Table, columns: tuple[str, ...]) -> bool:
    """Whether rows of ``columns`` can go to ``table`` as one array per column: not when a
    column left out has a Python-side default (``INSERT … SELECT`` would not apply it), nor
    when a column is an array (a list value would be taken for one more dimension of the
    bound array; JSON columns go as text, see :func:`_json_text`)."""
    if any(c.default is not None and c.name not in columns for c in table.columns):
        return False
    return not any(isinstance(_base_type(table.c[name].type), ARRAY) for name in columns)


def _is_json(column_type: Any) -> bool:
    return isinstance(_base_type(column_type), JSON)


def _json_text(value: Any, column_type: Any, dialect: Dialect) -> str | None:
    """A JSON column's value as the text of a ``text[]`` element, cast back to JSON in the
    statement: bound as JSON, a list would be taken for one more dimension of the array.
    Serialised as the dialect would (its ``json_serializer``, else ``json.dumps``); None is
    JSON ``null`` unless the type stores None as SQL NULL, as SQLAlchemy binds it."""
    if value is None and _base_type(column_type).none_as_null:
        return None
    serialize = getattr(dialect, "_json_serializer", None) or json.dumps
    return str(serialize(value))


def _base_type(column_type: Any) -> Any:
    return column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type


@lru_cache(maxsize=256)
def _rows_insert(
    table: Table,
    dialect: str,
    skip_conflicts_on: tuple[str, ...] | None,
    returning: tuple[str, ...],
    on_conflict: OnConflict | None,
    arrays_of: tuple[str, ...] = (),
    as_text: tuple[str, ...] = (),
) -> Any:
    """The statement of :meth:`CoreConnection.insert_rows`, built once per shape: with
    ``arrays_of``, ``INSERT INTO table (arrays_of) SELECT … FROM unnest(:c1, :c2, …) WITH
    ORDINALITY`` in array order (PostgreSQL; the columns of ``as_text`` bound as text and
    cast to their type); without, a plain insert for an executemany."""
    statement = dialect_insert(dialect)(table)
    if arrays_of:
        arrays = [
            bindparam(c, type_=postgresql.ARRAY(Text if c in as_text else table.c[c].type))
            for c in arrays_of
        ]
        given = (
            func.unnest(*arrays)
            .table_valued(*arrays_of, with_ordinality=_ROW_NUMBER)
            .render_derived(name="given")
        )
        values = [
            cast(given.c[c], _base_type(table.c[c].type)) if c in as_text else given.c[c]
            for c in arrays_of
        ]
        rows = select(*values).order_by(given.c[_ROW_NUMBER])
        statement = statement.from_select(list(arrays_of), rows)
    if skip_conflicts_on is not None:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip_conflicts_on) or None)
    if on_conflict is not None:
        statement = on_conflict(statement)
    return statement.returning(*(table.c[c] for c in returning)) if returning else statement


class Session(AsyncSession):
    """The sessions of :class:`Database`: an ``AsyncSession`` that keeps the
    :class:`CoreConnection` of its current transaction (:func:`core_connection`)."""

    core: CoreConnection | None = None


async def core_connection(session: AsyncSession) -> CoreConnection:
    """``session``'s :class:`CoreConnection` for its current transaction, which it begins
    if there is none (as ``session.execute`` would). Getting the connection from the session
    costs a greenlet itself, so a :class:`Session` keeps it while the transaction lasts."""
    kept = session.core if isinstance(session, Session) else None
    if kept is not None:
        current = session.sync_session.get_transaction()
        if kept.transaction is current and current.is_active:
            return kept
    connection = await session.connection()
    transaction = session.sync_session.get_transaction()
    assert transaction is not None  # session.connection() began one
    found = CoreConnection(session, connection, transaction)
    if isinstance(session, Session):
        session.core = found
    return found


async def core_execute(
    session: AsyncSession, statement: Executable, parameters: Parameters = None
) -> Rows:
    """``session.execute(statement, parameters)`` for a Core statement, on the session's
    :class:`CoreConnection` (see there for what it saves and when it is the same)."""
    return await (await core_connection(session)).execute(statement, parameters)
