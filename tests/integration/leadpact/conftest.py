"""The shared library's integration fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from leadpact.db import Database
from leadpact.messaging import MESSAGING


@asynccontextmanager
async def fresh_database(
    kind: str,
    tmp_path: Path,
    pg_database: Callable[[str], Awaitable[str]],
    *tables: MetaData,
) -> AsyncIterator[Database]:
    """An empty SQLite file or PostgreSQL database (``kind``) with the outbox and inbox and
    ``tables``; disposed of afterwards. For the tests that run once per dialect."""
    name = "library"
    url = f"sqlite+aiosqlite:///{tmp_path / name}.db" if kind == "sqlite" else None
    db = Database(url or await pg_database(name))
    async with db.engine.begin() as conn:
        for metadata in (MESSAGING, *tables):
            await conn.run_sync(metadata.create_all)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_database: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Database]:
    """:func:`fresh_database` of each dialect in turn, with the test module's ``TABLES``."""
    tables: tuple[MetaData, ...] = getattr(request.module, "TABLES", ())
    async with fresh_database(request.param, tmp_path, pg_database, *tables) as db:
        yield db
