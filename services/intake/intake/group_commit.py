"""Group commit: submissions that arrive together share one transaction.

Each lead must be durable before its 2xx, and a transaction per lead spends most of its time
on BEGIN, COMMIT and per-statement overhead. While one transaction commits, the next
submissions queue; they are then written together (one multi-row INSERT per table, one
COMMIT). Nothing is answered before its transaction committed. If a shared transaction fails
(say one submission hits a unique constraint), each of its submissions is run again alone, so
one bad submission never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

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
        begin: Callable[[], UnitOfWork],
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
        async with self._begin() as uow:
            scratch = await self._prefetch(uow, set().union(*(keys for _, keys, _ in batch)))
            results = [await work(uow, scratch) for work, _, _ in batch]
            await self._finish(uow, scratch)
            await uow.commit()
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _alone(self, work: Work[T], keys: frozenset[str], future: asyncio.Future[T]) -> None:
        try:
            async with self._begin() as uow:
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
