"""``leadpact.db.CoreConnection``: Core statements on a session's transaction without the ORM
session's work per statement (and, on SQLite, without a greenlet). The same rows and results
as ``session.execute``, the same transaction (commit and rollback take its statements along),
the same flush of pending ORM objects first. Real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, String, bindparam, event, func, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.util.concurrency import in_greenlet

from leadpact.clock import ManualClock
from leadpact.db import Database, UtcDateTime, core_connection, core_execute, insert_or_skip
from leadpact.events import LeadActivity
from leadpact.messaging import UnitOfWork, inbox, outbox

NOW = datetime(2026, 11, 2, 10, tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Visit(Base):
    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), unique=True)
    pages: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


VISITS = Base.metadata.tables["visits"]
VISITS_OF = (
    select(VISITS.c.lead_id, VISITS.c.pages, VISITS.c.at)
    .where(VISITS.c.lead_id.in_(bindparam("leads", expanding=True)))
    .order_by(VISITS.c.id)
)


def add_new(dialect: str) -> Any:
    return insert_or_skip(VISITS, dialect, "lead_id").returning(VISITS.c.lead_id)


def visit(lead_id: str, pages: int = 1) -> dict[str, Any]:
    return {"lead_id": lead_id, "pages": pages, "at": NOW + timedelta(minutes=pages)}


TABLES = (Base.metadata,)  # the conftest's `database` of each dialect creates them


async def visits(db: Database) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(VISITS.c.lead_id, VISITS.c.pages, VISITS.c.at))
        return sorted(tuple(r) for r in rows)


async def count(db: Database, table: Any) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_the_same_rows_and_results_as_session_execute(database: Database) -> None:
    """Inserts with RETURNING (one row, many rows, a conflict skipped), an expanding IN and
    typed columns read back: what each path returns and stores is the same."""
    dialect = database.engine.dialect.name
    results: dict[str, list[Any]] = {}
    stored: dict[str, list[tuple[Any, ...]]] = {}
    for path in ("session", "core"):
        async with database.session() as session:

            async def run(statement: Any, params: Any, path: str = path) -> Any:
                if path == "session":
                    return await session.execute(statement, params)
                return await core_execute(session, statement, params)

            one = (await run(add_new(dialect), visit("a"))).scalars().all()
            many = await run(add_new(dialect), [visit("b", 2), visit("a", 9), visit("c", 3)])
            read = (await run(VISITS_OF, {"leads": ["c", "a", "z"]})).all()
            results[path] = [one, sorted(many.scalars().all()), [tuple(r) for r in read]]
            await session.commit()
        stored[path] = await visits(database)
        async with database.session() as session:
            await session.execute(VISITS.delete())
            await session.commit()

    assert results["core"] == results["session"]
    assert results["core"] == [
        ["a"],
        ["b", "c"],
        [("a", 1, NOW + timedelta(minutes=1)), ("c", 3, NOW + timedelta(minutes=3))],
    ]
    assert results["core"][2][0][2].tzinfo is UTC  # UtcDateTime's result processing ran
    assert stored["core"] == stored["session"]


async def test_a_rollback_undoes_what_the_core_connection_wrote(database: Database) -> None:
    """A unit of work left without commit (a handler failed) takes its fast statements, its
    claim and its ORM objects back; a committed one keeps them all."""
    clock = ManualClock(NOW)
    with pytest.raises(RuntimeError):
        async with UnitOfWork(database, clock, "test") as uow:
            assert await uow.claim("consumer", "event-1")
            connection = await uow.connection()
            await connection.execute(add_new(connection.dialect.name), visit("a"))
            uow.session.add(Visit(**visit("b", 2)))
            raise RuntimeError("the handler failed")
    assert await visits(database) == []
    assert await count(database, inbox) == 0

    async with UnitOfWork(database, clock, "test") as uow:
        assert await uow.claim("consumer", "event-1")
        connection = await uow.connection()
        await connection.execute(add_new(connection.dialect.name), visit("a"))
        uow.session.add(Visit(**visit("b", 2)))
        uow.emit(LeadActivity(lead_id="a", activity="called", occurred_at=NOW))
        await uow.commit()
    assert [lead for lead, *_ in await visits(database)] == ["a", "b"]
    assert await count(database, inbox) == 1
    assert await count(database, outbox) == 1


async def test_a_unit_of_work_committing_twice_gets_the_new_transactions_connection(
    database: Database,
) -> None:
    """The connection is kept for one transaction only: after a commit the next statement
    runs in the next transaction, which a later rollback undoes alone."""
    async with UnitOfWork(database, ManualClock(NOW), "test") as uow:
        first = await uow.connection()
        await first.execute(insert(VISITS), visit("a"))
        await uow.commit()
        second = await uow.connection()
        assert second is not first
        assert await uow.connection() is second  # kept while the transaction lasts
        await second.execute(insert(VISITS), visit("b"))
    assert [lead for lead, *_ in await visits(database)] == ["a"]


async def test_pending_orm_objects_are_flushed_before_a_core_statement(
    database: Database,
) -> None:
    """As ``session.execute`` does for every statement: a query sees what the handler added
    through the ORM a moment before."""
    async with database.session() as session:
        session.add(Visit(**visit("a")))
        read = await core_execute(session, VISITS_OF, {"leads": ["a"]})
        assert [lead for lead, *_ in read] == ["a"]
        session.add(Visit(**visit("b")))
        connection = await core_connection(session)
        assert (await connection.scalar(select(func.count()).select_from(VISITS))) == 2


async def test_an_orm_statement_still_loads_orm_objects(database: Database) -> None:
    async with database.session() as session:
        await core_execute(session, insert(VISITS), visit("a"))
        found = (await core_execute(session, select(Visit))).scalars().one()
        assert isinstance(found, Visit)
        assert found is await session.get(Visit, found.id)  # in the session's identity map


async def test_on_sqlite_statements_run_without_a_greenlet(database: Database) -> None:
    """LoopSQLiteDialect never waits: its Core statements run inline on the loop (the CPU
    this path saves); asyncpg needs the greenlet to await its driver."""
    inline: list[bool] = []

    def note(*_args: Any) -> None:
        inline.append(not in_greenlet())

    event.listen(database.engine.sync_engine, "before_cursor_execute", note)
    async with database.session() as session:
        await session.execute(VISITS_OF, {"leads": ["a"]})
        await core_execute(session, VISITS_OF, {"leads": ["a"]})
    assert inline == [False, database.engine.dialect.name == "sqlite"]
