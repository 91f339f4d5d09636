"""PostgreSQL connections are pinged when lent after sitting idle (``PingWhenIdle``), not
before every session: one the server dropped while it sat in the pool is replaced before
anyone uses it, and one reused at once costs no round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from leadpact.db import Database

pytestmark = [pytest.mark.postgres]


async def _backend(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await pg_database("idle_ping")
    db = Database(url)
    db_pings = db.engine.sync_engine.pool.dispatch.checkout  # the listener is installed
    assert db_pings, "PostgreSQL pools ping idle connections at checkout"
    admin = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        first = await _backend(db)
        assert await _backend(db) == first, "reused at once: the same connection (LIFO)"

        await admin.execute("SELECT pg_terminate_backend($1)", first)
        await asyncio.sleep(1.2)  # longer than the idle time: pinged, found dead, replaced
        second = await _backend(db)  # no error reaches the caller
        assert second != first
        assert await db.ping()
    finally:
        await admin.close()
        await db.dispose()
