"""Group commit: submissions that arrive together share one transaction.

Each lead must be durable before its 2xx, and a transaction per lead spends most of its time
on BEGIN, COMMIT and per-statement overhead. While one transaction commits, the next
submissions queue; they are then written together: on SQLite one INSERT per table and one
COMMIT; on PostgreSQL one statement for every table and the outbox, on connections the
group commit keeps (``HeldConnections``): two round trips per batch, the dedup read and the
write. Nothing is answered before its transaction committed. If a shared transaction fails
(say one submission hits a unique constraint), each of its submissions is run again alone, so
one bad submission never fails the others.

With ``overlap_from`` (PostgreSQL), the next batch is prepared (its dedup read and its work)
while the previous batch's write is in flight, on a second held connection: otherwise the
process waits on PostgreSQL twice per batch with requests queued behind it (the server did
not fill its core, measured). Writes still go one batch after the other, in order, so a
lead's events keep their order and each answer still follows its own commit.
The prepared batch cannot see the rows of the one being written (not committed yet), so
what that batch found or staged under the prepared batch's keys is carried over its dedup
read; if the write then fails, the prepared batch is thrown away and prepared again once
the failed one's submissions were retried alone, because it may have relied on rows that
never got written.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpact.clock import Clock
from leadpact.db import Database
from leadpact.messaging import UnitOfWork

T = TypeVar("T")

Scratch = dict[str, Any]
"""What the submissions of one transaction tell each other (e.g. people already added).
A submission's keys map to what it and the others must know about them: the prefetch puts
what the database has there, and a submission that adds something findable by a key
records it there too (the overlapping batch after it relies on that)."""

Work = Callable[[UnitOfWork, Scratch], Awaitable[T]]
"""One submission's part of a transaction. It may be run more than once (alone after a
failed shared transaction, or again when a batch is prepared again): it must only stage
into the unit of work and the scratch, never write by itself."""

Prefetch = Callable[[UnitOfWork, set[str]], Awaitable[Scratch]]
"""Reads, in one query, what every submission of a transaction needs (by their keys)."""


Finish = Callable[[UnitOfWork, Scratch], Awaitable[None]]
"""Writes what the submissions of a transaction staged, just before it commits."""


async def _nothing(uow: UnitOfWork, keys: set[str]) -> Scratch:
    return {}


async def _no_finish(uow: UnitOfWork, scratch: Scratch) -> None:
    return None


@dataclass
class _Item(Generic[T]):
    work: Work[T]
    keys: frozenset[str]
    future: asyncio.Future[T]


@dataclass
class _Prepared(Generic[T]):
    """A batch whose work ran in an open transaction, not written yet."""

    batch: list[_Item[T]]
    uow: UnitOfWork
    scratch: Scratch
    results: list[T]
    exits: AsyncExitStack


@dataclass
class _Writing(Generic[T]):
    """The batch being written: its task answers True once it committed, False when it
    failed (its submissions then ran alone); ``scratch`` is what the next batch carries."""

    task: asyncio.Task[bool]
    scratch: Scratch


class GroupCommit(Generic[T]):
    def __init__(
        self,
        begin: Callable[[], Awaitable[UnitOfWork]],
        prefetch: Prefetch = _nothing,
        finish: Finish = _no_finish,
        max_batch: int = 64,
        overlap_from: int = 0,
    ) -> None:
        """``overlap_from``: prepare the next batch beside a write once this many
        submissions wait (0: never; one batch at a time). Only for ``begin``s whose
        transactions may run side by side (PostgreSQL's held connections)."""
        self._begin = begin
        self._prefetch = prefetch
        self._finish = finish
        self._max_batch = max_batch
        self._overlap_from = overlap_from
        self._pending: list[_Item[T]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._arrival: asyncio.Future[None] | None = None
        """Set while the drainer has nothing to prepare and waits on a write."""

    async def run(self, work: Work[T], keys: frozenset[str] = frozenset()) -> T:
        """Run ``work`` in a transaction (maybe shared); return once it is committed.
        ``keys`` are what the prefetch reads for it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(work, keys, future))
        if (
            self._arrival is not None
            and not self._arrival.done()
            and len(self._pending) >= self._overlap_from
        ):
            self._arrival.set_result(None)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        writing: _Writing[T] | None = None
        while self._pending or writing is not None:
            if writing is not None and len(self._pending) < self._overlap_from:
                if await self._arrival_or_written(writing):
                    writing = None
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            prepared = await self._prepare(batch, writing.scratch if writing else {})
            if writing is not None and not await _written(writing):
                prepared = await self._prepare_again(prepared, batch)
            writing = None
            if prepared is None:
                for item in batch:
                    await self._alone(item)
                continue
            writing = _Writing(asyncio.create_task(self._write(prepared)), prepared.scratch)
            if not self._overlap_from:
                await _written(writing)
                writing = None

    async def _arrival_or_written(self, writing: _Writing[T]) -> bool:
        """Wait until ``overlap_from`` submissions wait (to be prepared at once, beside the
        write) or the batch being written is done; True in the latter case.

        Why not at the first arrival: a batch costs PostgreSQL a fixed ~0.5-0.8 ms of CPU
        (its two statements, its commit) whatever its size, and preparing at once made a
        third of the batches 1-3 leads long (measured at 32 clients); a small batch waits
        for the write instead, as without overlap."""
        self._arrival = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((writing.task, self._arrival), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._arrival = None
        if not writing.task.done():
            return False
        await _written(writing)
        return True

    async def _prepare(self, batch: list[_Item[T]], carried: Scratch) -> _Prepared[T] | None:
        """Open the batch's transaction, read what it needs, run its work. ``carried``: the
        scratch of the batch still being written, whose entries under this batch's keys
        are newer than what the read can see. None if anything failed (nothing written)."""
        exits = AsyncExitStack()
        try:
            uow = await exits.enter_async_context(await self._begin())
            keys: set[str] = set().union(*(item.keys for item in batch))
            scratch = await self._prefetch(uow, keys)
            scratch.update({key: carried[key] for key in keys if key in carried})
            results = [await item.work(uow, scratch) for item in batch]
        except Exception:  # noqa: BLE001 - any failure: each submission is retried alone
            await exits.__aexit__(*_raised())
            return None
        return _Prepared(batch, uow, scratch, results, exits)

    async def _prepare_again(
        self, prepared: _Prepared[T] | None, batch: list[_Item[T]]
    ) -> _Prepared[T] | None:
        """The batch written before this one failed: this one may have taken a person or a
        ref from it that never got written. Its staged work is dropped (nothing of it
        reached the database) and it is prepared anew on what did get committed."""
        if prepared is not None:
            await prepared.exits.aclose()
        return await self._prepare(batch, {})

    async def _write(self, prepared: _Prepared[T]) -> bool:
        """Write and commit a prepared batch, then answer its submissions; on failure run
        each of them alone. True if the batch was written as prepared."""
        try:
            await self._finish(prepared.uow, prepared.scratch)
            await prepared.uow.commit()
        except Exception:  # noqa: BLE001 - any failure: retry each one alone
            await prepared.exits.__aexit__(*_raised())
            for item in prepared.batch:
                await self._alone(item)
            return False
        for item, result in zip(prepared.batch, prepared.results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
        await prepared.exits.aclose()
        return True

    async def _alone(self, item: _Item[T]) -> None:
        try:
            async with await self._begin() as uow:
                scratch = await self._prefetch(uow, set(item.keys))
                result = await item.work(uow, scratch)
                await self._finish(uow, scratch)
                await uow.commit()
        except Exception as exc:  # noqa: BLE001 - handed to the submission's caller
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)


async def _written(writing: _Writing[Any]) -> bool:
    """Whether the batch being written got written as prepared. A failure after its
    commit (closing the transaction) counts as not: the next batch is then prepared again
    on what is committed, which is right either way."""
    try:
        return await writing.task
    except Exception:  # noqa: BLE001 - see above
        return False


def _raised() -> tuple[type[BaseException] | None, BaseException | None, TracebackType | None]:
    """The exception being handled, as ``__aexit__`` takes it (so a held connection is
    dropped, or kept after a constraint violation, as after an ``async with``)."""
    return sys.exc_info()


class HeldConnections:
    """The connections the group commit reads and writes through, kept between its
    transactions (PostgreSQL): one for the reads of each transaction being prepared (one,
    or two when batches overlap), and one writer, which every write goes through in turn.

    Taking a connection from the pool for every transaction costs a round trip each time
    (the pool pings a connection before lending it). Kept instead, and dropped after any
    failure, so a later transaction starts on a fresh connection from the pool (pinged
    then). They are in autocommit mode: a transaction's reads run alone and its writes are
    one statement, so only work whose writes are made that way may use them.

    Reads and the write are on different connections because they want different plans:
    the reads one made with each batch's values (``plan_cache_mode``, a session setting;
    see ``_connect``), the write a generic one, as its plan does not depend on the values:
    planning it for every batch cost PostgreSQL ~25 us of CPU per lead at 12 leads per
    batch (105 -> 81 us per lead for the write, measured)."""

    def __init__(self, db: Database, clock: Clock, source: str, on_commit: Callable[[], None]):
        self._db = db
        self._clock = clock
        self._source = source
        self._on_commit = on_commit
        self._idle: list[_Held] = []
        self._closed = False
        self._writer: _Held | None = None
        self._writing = asyncio.Lock()

    async def begin(self) -> UnitOfWork:
        """A unit of work on an idle held connection, or on a new one if none is idle; the
        unit of work gives it back when it ends."""
        self._closed = False  # used again after ``close`` (an app started twice)
        while self._idle:
            held = self._idle.pop()
            if not held.connection.closed:
                return HeldUnitOfWork(self, held)
        return HeldUnitOfWork(self, await self._connect(custom_plans=True))

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[Any]:
        """The asyncpg connection that writes, lent to one write at a time (writes go in
        order anyway); after a failure the next write gets a fresh one."""
        async with self._writing:
            held = self._writer or await self._connect(custom_plans=False)
            self._writer = None
            try:
                yield held.driver
            except BaseException as exc:
                await self.drop(held, broken=not isinstance(exc, IntegrityError))
                raise
            if self._closed:
                await self.drop(held, broken=False)
            else:
                self._writer = held

    async def _connect(self, *, custom_plans: bool) -> _Held:
        connection = await self._db.engine.connect()
        # Autocommit: no BEGIN/COMMIT round trips; what a transaction writes goes in one
        # statement (``store.insert_together``), atomic on its own.
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        driver: Any = (await connection.get_raw_connection()).driver_connection
        if custom_plans:
            # Plans made with the values of each batch. A prepared statement otherwise
            # switches to a generic plan and keeps it; made while ``leads`` was nearly
            # empty (never analyzed yet), it made PostgreSQL's CPU per lead grow with the
            # table: 155 -> 515 us over 4 x 5 s of load, flat at ~115 us with this.
            await driver.execute("SET plan_cache_mode = force_custom_plan")
        return _Held(connection, driver, custom_plans)

    async def give_back(self, held: _Held) -> None:
        """Keep a connection for the next transaction; one given back after ``close``
        (a write that was still in flight at shutdown) is let go."""
        if self._closed:
            await self.drop(held, broken=False)
        else:
            self._idle.append(held)

    async def drop(self, held: _Held, *, broken: bool = True) -> None:
        """Let go of a connection; ``broken`` (any failure but a constraint violation)
        discards it: its statements run on the driver connection, where SQLAlchemy does
        not see a lost connection, so the pool must not lend it again."""
        try:
            if broken:
                await held.connection.invalidate()
            elif held.custom_plans:
                await held.driver.execute("RESET plan_cache_mode")  # back to the pool as lent
            await held.connection.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            await held.connection.invalidate()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        if self._writer is not None:
            idle.append(self._writer)
            self._writer = None
        for held in idle:
            await self.drop(held, broken=False)


@dataclass(frozen=True)
class _Held:
    connection: AsyncConnection
    driver: Any
    """The asyncpg connection under ``connection``."""
    custom_plans: bool


class HeldUnitOfWork(UnitOfWork):
    """A unit of work on a held connection (its session joins that connection)."""

    def __init__(self, pool: HeldConnections, held: _Held) -> None:
        super().__init__(pool._db, pool._clock, pool._source, on_commit=pool._on_commit)
        self.session = AsyncSession(bind=held.connection, expire_on_commit=False)
        self.dialect = held.connection.dialect
        self.driver = held.driver
        """The asyncpg connection the transaction reads through (its write goes through
        ``writer``): the group commit's statements go straight to the driver."""
        self._pool = pool
        self._held = held

    def writer(self) -> AbstractAsyncContextManager[Any]:
        """The asyncpg connection to write this transaction's one statement through."""
        return self._pool.writer()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        except BaseException:
            await self._pool.drop(self._held)
            raise
        if exc_type is None:
            await self._pool.give_back(self._held)
        else:
            await self._pool.drop(self._held, broken=not issubclass(exc_type, IntegrityError))
