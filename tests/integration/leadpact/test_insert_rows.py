"""``CoreConnection.insert_rows``: many rows in one statement of one shape on PostgreSQL
(an ``unnest`` of a bound array per column), an executemany elsewhere; the same rows, in
the same order, either way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    event,
    select,
)

from leadpact.db import Database, UtcDateTime, core_connection

AT = datetime(2026, 11, 2, 9, tzinfo=UTC)
ROWS = MetaData()
notes = Table(
    "notes",
    ROWS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(36), nullable=False, unique=True),
    Column("body", LargeBinary),
    Column("seen", Boolean, nullable=False),
    Column("at", UtcDateTime),
    Column("source", String(16), nullable=False, default="form"),
)
tagged = Table(
    "tagged",
    ROWS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(36), nullable=False),
    Column("tags", JSON, nullable=False),
)


TABLES = (ROWS,)  # the conftest's `database` of each dialect creates them


def note(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "lead_id": f"lead-{n}",
        "body": None if n % 3 == 0 else b"\x00\xffbytes %d" % n,
        "seen": n % 2 == 0,
        "at": None if n % 4 == 0 else AT + timedelta(seconds=n),
        **extra,
    }


async def insert(
    database: Database, rows: list[dict[str, Any]], table: Table = notes, **options: Any
) -> list[str]:
    """Insert ``rows`` into ``table`` in one transaction (``options``: of ``insert_rows``);
    the SQL statements that took, then what the insert returned (if asked)."""
    statements: list[Any] = []

    def seen(conn: Any, cursor: Any, sql: str, *rest: Any) -> None:
        statements.append(sql)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with database.session() as session, session.begin():
            returned = await (await core_connection(session)).insert_rows(table, rows, **options)
            if options.get("returning"):
                statements.append(sorted(returned))
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    return statements


async def stored(database: Database) -> list[dict[str, Any]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(select(notes).order_by(notes.c.id))
        return [dict(row._mapping) for row in rows]


async def test_many_rows_arrive_whole_and_in_order(database: Database) -> None:
    rows = [note(n, source="meta") for n in range(40)]
    statements = await insert(database, rows)

    got = await stored(database)
    assert [{k: v for k, v in row.items() if k != "id"} for row in got] == rows
    if database.engine.dialect.name == "postgresql":
        assert len(statements) == 1
        assert "unnest" in statements[0]


async def test_a_column_left_out_still_gets_its_python_default(database: Database) -> None:
    await insert(database, [note(1), note(2)])

    assert [row["source"] for row in await stored(database)] == ["form", "form"]


async def test_one_row_and_no_rows(database: Database) -> None:
    assert await insert(database, []) == []
    await insert(database, [note(7, source="api")])

    assert [row["lead_id"] for row in await stored(database)] == ["lead-7"]


async def test_rows_that_differ_in_their_columns_are_refused(database: Database) -> None:
    with pytest.raises(ValueError, match="notes differ in their columns"):
        await insert(database, [note(1), note(2, source="api"), note(3)])

    assert await stored(database) == []


async def test_rows_already_there_are_skipped_and_the_new_ones_returned(
    database: Database,
) -> None:
    await insert(database, [note(1), note(2)])
    *statements, returned = await insert(
        database,
        [note(n, source="api") for n in (2, 3, 1, 4)],
        skip_conflicts_on=("lead_id",),
        returning=("lead_id",),
    )

    assert returned == [("lead-3",), ("lead-4",)]
    got = await stored(database)
    assert [row["lead_id"] for row in got] == ["lead-1", "lead-2", "lead-3", "lead-4"]
    assert [row["source"] for row in got] == ["form", "form", "api", "api"]  # not overwritten
    if database.engine.dialect.name == "postgresql":
        assert len(statements) == 1
        assert "unnest" in statements[0]


async def test_json_lists_and_objects_arrive_as_given(database: Database) -> None:
    """A JSON list is one value, not another dimension of an array of rows: on PostgreSQL
    JSON goes as text and is cast back, still in the one statement."""
    rows: list[dict[str, Any]] = [
        {"lead_id": "lead-1", "tags": ["a", "b"]},
        {"lead_id": "lead-2", "tags": {"k": [1, 2], "ñ": "été"}},
        {"lead_id": "lead-3", "tags": []},
        {"lead_id": "lead-4", "tags": None},  # JSON null (the column is NOT NULL)
    ]
    statements = await insert(database, rows, tagged)
    if database.engine.dialect.name == "postgresql":
        assert len(statements) == 1
        assert "unnest" in statements[0]

    async with database.engine.connect() as conn:
        got = (
            await conn.execute(select(tagged.c.lead_id, tagged.c.tags).order_by(tagged.c.id))
        ).all()
    assert [tuple(row) for row in got] == [(r["lead_id"], r["tags"]) for r in rows]


async def test_an_upsert_updates_the_rows_there_and_inserts_the_others(database: Database) -> None:
    async with database.session() as session, session.begin():
        await (await core_connection(session)).insert_rows(notes, [note(1), note(2)])

    def newer_seen(ins: Any) -> Any:
        return ins.on_conflict_do_update(
            index_elements=[notes.c.lead_id], set_={"seen": ins.excluded.seen}
        )

    changed = [note(n, seen=seen, source="api") for n, seen in ((2, True), (3, True), (5, False))]
    statements = await insert(database, changed, on_conflict=newer_seen)

    got = {row["lead_id"]: row["seen"] for row in await stored(database)}
    assert got == {"lead-1": False, "lead-2": True, "lead-3": True, "lead-5": False}
    if database.engine.dialect.name == "postgresql":
        assert len(statements) == 1
        assert "unnest" in statements[0]
