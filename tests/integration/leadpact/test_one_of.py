"""``OneOf``: ``column IN (…)`` of a bound list — one statement text for any length on
PostgreSQL (``= ANY`` of an array), an expanding ``IN`` on SQLite that an index serves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.dialects import sqlite

from leadpact.db import Database, OneOf

ROWS = MetaData()
leads = Table(
    "leads_seen",
    ROWS,
    Column("id", Integer, primary_key=True),
    Column("lead_id", String(36), nullable=False, index=True),
)
TABLES = (ROWS,)  # the conftest's `database` of each dialect creates them
OF_LEADS = select(leads.c.lead_id).where(OneOf(leads.c.lead_id, "wanted")).order_by(leads.c.id)


async def test_any_number_of_values_finds_exactly_those_rows(database: Database) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, *rest: Any) -> None:
        statements.append(sql)

    async with database.engine.begin() as conn:
        await conn.execute(insert(leads), [{"lead_id": f"lead-{n}"} for n in range(10)])
    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    found = []
    async with database.engine.connect() as conn:
        for wanted in (["lead-3"], ["lead-1", "lead-7", "nobody"], [f"lead-{n}" for n in range(8)]):
            found.append((await conn.execute(OF_LEADS, {"wanted": wanted})).scalars().all())

    assert found == [
        ["lead-3"],
        ["lead-1", "lead-7"],
        [f"lead-{n}" for n in range(8)],
    ]
    if database.engine.dialect.name == "postgresql":
        assert len(set(statements)) == 1  # one statement text whatever the length
        assert "= any(" in statements[0].lower()


def test_on_sqlite_the_list_is_a_plain_in_that_an_index_can_serve() -> None:
    sql = str(OF_LEADS.compile(dialect=sqlite.dialect()))

    assert "leads_seen.lead_id IN (" in sql
    assert "= 1" not in sql  # a boolean-typed element would compare its IN with 1
