"""``touch_lead`` runs one upsert statement cached per set of columns (and per column,
whether it keeps the earliest value): each shape must still write only its own columns,
the earliest rule only where asked, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedback import store
from leadpact.db import Database
from tests.fixtures.schema import database_with

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_shapes_on_sqlite(tmp_path: Path) -> None:
    async with database_with(f"sqlite+aiosqlite:///{tmp_path}/fb.db", store.Base.metadata) as db:
        await _check_shapes(db)
        await _check_lead_facts(db)


async def test_shapes_on_postgres(pg_database: Callable[[str], Awaitable[str]]) -> None:
    async with database_with(await pg_database("feedback_statements"), store.Base.metadata) as db:
        await _check_shapes(db)
        await _check_lead_facts(db)


async def _row(db: Database, lead_id: str) -> store.LeadRow:
    async with db.session() as session:
        row = await store.lead(session, lead_id)
        assert row is not None
        return row


async def _touch(db: Database, lead_id: str, **values: object) -> None:
    async with db.session() as session, session.begin():
        await store.touch_lead(session, lead_id, **values)


async def _check_shapes(db: Database) -> None:
    await _touch(db, "a", created_at__earliest=T0, source="web", campaign="q1")
    await _touch(db, "a", owner="ana")  # another shape: the others stay
    await _touch(db, "a", created_at__earliest=T0 + timedelta(hours=1))  # later: kept
    row = await _row(db, "a")
    assert (row.created_at, row.source, row.campaign, row.owner) == (T0, "web", "q1", "ana")
    await _touch(db, "a", created_at__earliest=T0 - timedelta(hours=1), owner=None)
    assert (await _row(db, "a")).created_at == T0 - timedelta(hours=1)
    assert (await _row(db, "a")).owner == "ana"  # None leaves a fact alone

    # The same column with and without the earliest rule: two statements, not one.
    await _touch(db, "b", mql_at__earliest=T0)
    await _touch(db, "b", mql_at=T0 + timedelta(days=1))  # not earliest: overwrites
    assert (await _row(db, "b")).mql_at == T0 + timedelta(days=1)
    await _touch(db, "b", mql_at__earliest=T0 + timedelta(days=2))  # earliest: kept
    assert (await _row(db, "b")).mql_at == T0 + timedelta(days=1)
    await _touch(db, "b", mql_at__earliest=T0)
    assert (await _row(db, "b")).mql_at == T0

    # The same columns given in another order: the same statement, the same result.
    await _touch(db, "c", owner="bo", sql_at__earliest=T0)
    await _touch(db, "c", sql_at__earliest=T0 - timedelta(minutes=5), owner="cy")
    row = await _row(db, "c")
    assert (row.sql_at, row.owner, row.source) == (T0 - timedelta(minutes=5), "cy", None)

    # Nothing given: the row exists, twice is fine.
    await _touch(db, "d")
    await _touch(db, "d", owner=None)
    assert (await _row(db, "d")).owner is None


async def _check_lead_facts(db: Database) -> None:
    async with db.session() as session:
        assert await store.lead_facts(session, "x") is None
    await _touch(db, "x", source="web", campaign="q1", mql_at__earliest=T0)
    await _touch(db, "x", contract_version="v2", points=40)
    async with db.session() as session:
        row = await store.lead_facts(session, "x")
    assert row is not None
    assert (row.source, row.campaign, row.mql_at, row.contract_version) == ("web", "q1", T0, "v2")
