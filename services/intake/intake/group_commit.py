"""Group commit: submissions that arrive together share one transaction.

Each lead must be durable before its 2xx, and a transaction per lead spends most of its time
on BEGIN, COMMIT and per-statement overhead. While one transaction commits, the next
submissions queue; they are then written together: on SQLite one INSERT per table and one
COMMIT; on PostgreSQL one statement for every table and the outbox, on a connection the
group commit keeps (``HeldConnection``): two round trips per batch, the dedup read and the
write. Nothing is answered before its transaction committed. If a shared transaction fails
(say one submission hits a unique constraint), each of its submissions is run again alone, so
one bad submission never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpact.clock import Clock
from leadpact.db import Database
from leadpact.messaging import UnitOfWork

T = TypeVar("T")

Scratch = dict[str, Any]
"""What the submissions of one transaction tell each other (e.g. people already added)."""

Work = Callable[[UnitOfWork, Scratch], Awaitable[T]]
Prefetch = Callable[[UnitOfWork, set[str]], Awaitable[Scratch]]
"""Reads, in one query, what every submission of a transaction needs (by their keys)."""


Finish = Callable[[UnitOfWork, Scratch], Awaitable[None]]
"""Writes what the submissions of a transaction staged, just before it commits."""


async def _nothing(uow: UnitOfWork, keys: set[str]) -> Scratch:
    return {}


async def _no_finish(uow: UnitOfWork, scratch: Scratch) -> None:
    return None


class GroupCommit(Generic[T]):
    def __init__(
        self,
        begin: Callable[[], Awaitable[UnitOfWork]],
        prefetch: Prefetch = _nothing,
        finish: Finish = _no_finish,
        max_batch: int = 64,
    ) -> None:
        self._begin = begin
        self._prefetch = prefetch
        self._finish = finish
        self._max_batch = max_batch
        self._pending: list[tuple[Work[T], frozenset[str], asyncio.Future[T]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, work: Work[T], keys: frozenset[str] = frozenset()) -> T:
        """Run ``work`` in a transaction (maybe shared); return once it is committed.
        ``keys`` are what the prefetch reads for it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, keys, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._together(batch)
            except Exception:  # noqa: BLE001 - any failure: retry each one alone
                for item in batch:
                    await self._alone(*item)

    async def _together(
        self, batch: list[tuple[Work[T], frozenset[str], asyncio.Future[T]]]
    ) -> None:
        async with await self._begin() as uow:
            scratch = await self._prefetch(uow, set().union(*(keys for _, keys, _ in batch)))
            results = [await work(uow, scratch) for work, _, _ in batch]
            await self._finish(uow, scratch)
            await uow.commit()
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _alone(self, work: Work[T], keys: frozenset[str], future: asyncio.Future[T]) -> None:
        try:
            async with await self._begin() as uow:
                scratch = await self._prefetch(uow, set(keys))
                result = await work(uow, scratch)
                await self._finish(uow, scratch)
                await uow.commit()
        except Exception as exc:  # noqa: BLE001 - handed to the submission's caller
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


class HeldConnection:
    """The one connection the group commit writes through, kept between its transactions
    (PostgreSQL).

    The group commit runs one transaction at a time, so it needs one connection; taking it
    from the pool for every transaction costs a round trip each time (the pool pings a
    connection before lending it). Kept instead, and dropped after any failure, so the
    next transaction starts on a fresh connection from the pool (pinged then). It is in
    autocommit mode: a transaction's reads run alone and its writes are one statement, so
    only work whose writes are made that way may use it."""

    def __init__(self, db: Database, clock: Clock, source: str, on_commit: Callable[[], None]):
        self._db = db
        self._clock = clock
        self._source = source
        self._on_commit = on_commit
        self._connection: AsyncConnection | None = None
        self._driver: Any = None

    async def begin(self) -> UnitOfWork:
        if self._connection is None or self._connection.closed:
            connection = await self._db.engine.connect()
            # Autocommit: no BEGIN/COMMIT round trips; what a transaction writes goes in
            # one statement (``store.insert_together``), atomic on its own.
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            self._driver = (await self._connection.get_raw_connection()).driver_connection
            if not self._db.is_sqlite:
                # Plans made with the values of each batch. A prepared statement otherwise
                # switches to a generic plan and keeps it; made while ``leads`` was nearly
                # empty (never analyzed yet), it made PostgreSQL's CPU per lead grow with
                # the table: 155 -> 515 us over 4 x 5 s of load, flat at ~115 us with this.
                await self._driver.execute("SET plan_cache_mode = force_custom_plan")
        return HeldUnitOfWork(self, self._connection, self._driver)

    async def drop(self, *, broken: bool = True) -> None:
        """Let go of the connection; ``broken`` (any failure but a constraint violation)
        discards it: its statements run on the driver connection, where SQLAlchemy does
        not see a lost connection, so the pool must not lend it again."""
        connection, driver = self._connection, self._driver
        self._connection, self._driver = None, None
        if connection is not None:
            try:
                if broken:
                    await connection.invalidate()
                elif driver is not None and not self._db.is_sqlite:
                    await driver.execute("RESET plan_cache_mode")  # back to the pool as lent
                await connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                await connection.invalidate()

    async def close(self) -> None:
        await self.drop(broken=False)


class HeldUnitOfWork(UnitOfWork):
    """A unit of work on the held connection (its session joins that connection)."""

    def __init__(self, held: HeldConnection, connection: AsyncConnection, driver: Any) -> None:
        super().__init__(held._db, held._clock, held._source, on_commit=held._on_commit)
        self.session = AsyncSession(bind=connection, expire_on_commit=False)
        self.dialect = connection.dialect
        self.driver = driver
        """The asyncpg connection: the group commit's two statements go straight to it."""
        self._held = held

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if exc_type is not None:
                await self._held.drop(broken=not issubclass(exc_type, IntegrityError))
