"""SQLite's WAL is checkpointed on a thread of the Database, not inside a commit on the event
loop (where its page copy and fsyncs stalled every service of the embedded mode), and the
WAL stays bounded either way. Real SQLite files; sizes read from the WAL file itself."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from leadpact.db import Database, WalCheckpoints

PAGE = 4096
ROW = 3 * PAGE  # a row of ~3 overflow pages: a commit writes ~4 pages to the WAL


def wal_pages(path: Path) -> int:
    """Frames the WAL file has room for: its size only grows until the file is truncated,
    so this is the most the WAL ever held since it was created."""
    wal = Path(f"{path}-wal")
    return (wal.stat().st_size - 32) // (PAGE + 24) if wal.exists() else 0


async def commit_rows(db: Database, commits: int) -> None:
    for _ in range(commits):
        async with db.session() as session, session.begin():
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": os.urandom(ROW)})


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "wal.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)"))
    try:
        yield db, path
    finally:
        await db.dispose()


async def test_a_commit_on_the_loop_does_not_checkpoint_at_sqlites_1000_pages(
    database: tuple[Database, Path],
) -> None:
    db, path = database
    assert db.checkpoints is not None
    db.checkpoints.every = 10**9  # the thread never runs: only the loop could checkpoint

    await commit_rows(db, 400)  # ~1,600 pages

    # SQLite's default checkpoints in the commit that passes 1,000 pages, then reuses the
    # WAL from its start: the file would stay at ~1,000 pages.
    assert wal_pages(path) > 1_300


async def test_the_thread_checkpoints_and_the_wal_starts_over(
    database: tuple[Database, Path],
) -> None:
    db, path = database
    checkpoints = db.checkpoints
    assert checkpoints is not None
    for _ in range(8):  # ~3,200 pages in all, 100 commits (connection returns) per round
        await commit_rows(db, checkpoints.every)
        checkpoints.wait()  # the loop idles a moment, as between leads at a low rate

    assert checkpoints.done >= 7
    assert wal_pages(path) < 1_000  # reused from its start after each caught-up checkpoint
    with sqlite3.connect(path) as other:  # every row committed is there for a new reader
        assert other.execute("SELECT count(*) FROM t").fetchone() == (8 * checkpoints.every,)


async def test_the_wal_stays_bounded_when_the_thread_cannot_keep_up(
    database: tuple[Database, Path],
) -> None:
    db, path = database
    assert db.checkpoints is not None
    db.checkpoints.every = 10**9

    await commit_rows(db, WalCheckpoints.fallback_pages // 2)  # ~2x the fallback in pages

    assert wal_pages(path) < WalCheckpoints.fallback_pages + 100
