"""SQLite plans by statistics it only has after ANALYZE: the Database keeps them current, so
an update of one lead's deadline uses the lead's key, not a scan of every open deadline."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from leadpact.db import Database, PlannerStatistics

UPDATE = "UPDATE d SET status = 'met' WHERE lead_id = :lead AND clause = 'c' AND status = 'open'"


async def plan(db: Database) -> str:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(f"EXPLAIN QUERY PLAN {UPDATE}"), {"lead": "x"})).all()
    return " ".join(str(row[-1]) for row in rows)


async def test_the_planner_moves_to_the_lead_key_once_statistics_are_kept(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'planner.db'}")
    try:
        async with db.engine.begin() as conn:
            # The shape of sla_deadlines: a (lead, clause, round) key and the watch's
            # indexes, which lead with the status.
            await conn.execute(
                text(
                    "CREATE TABLE d (id INTEGER PRIMARY KEY, lead_id VARCHAR(64) NOT NULL,"
                    " clause VARCHAR(32) NOT NULL, round INTEGER DEFAULT 0 NOT NULL,"
                    " status VARCHAR(16) NOT NULL, partition INTEGER, due_at DATETIME,"
                    " at_risk_at DATETIME, UNIQUE (lead_id, clause, round))"
                )
            )
            await conn.execute(
                text("CREATE INDEX ix_d_status_due ON d (status, partition, due_at)")
            )
            await conn.execute(
                text("CREATE INDEX ix_d_status_risk ON d (status, partition, at_risk_at)")
            )
            await conn.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
                    " INSERT INTO d (lead_id, clause, status, due_at)"
                    " SELECT 'lead-' || i, 'c', 'open', '2026-11-26' FROM n"
                )
            )
        # Without statistics SQLite takes the status index: every open row is a candidate.
        assert "USING INDEX ix_d_status" in await plan(db)

        for i in range(PlannerStatistics().every):
            async with db.session() as session, session.begin():
                await session.execute(text(UPDATE), {"lead": f"lead-{i}"})

        assert "lead_id=? AND clause=?" in await plan(db)
    finally:
        await db.dispose()
