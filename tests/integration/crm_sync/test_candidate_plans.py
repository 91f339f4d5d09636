"""The plan PostgreSQL picks for a batch's candidates on a young table: crm-sync's tables
are read within seconds of being filled, before autovacuum has analysed them, and a plan
made without statistics must still look each candidate up instead of scanning or sorting
every customer (bench.e2e distributed, 300 leads/s: 40-140 ms per batch when it did).
SQLite's statement, one shape over JSON arrays, must look them up by index too."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, insert, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from crm_sync import store
from crm_sync.app import SERVICE
from leadpact.migrations import upgrade_async

CUSTOMERS = 2_000
AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def customer(n: int) -> dict[str, Any]:
    last = f"surname{n % 150:03d}"
    return {
        "id": f"{n:08d}-0000-0000-0000-000000000000",
        "first_name": f"first{n % 130}",
        "last_name": last,
        "sort_key": f"{last} first{n % 130}",
        "status": "active",
        "lifetime_value": 0,
        "sources": {},
        "created_at": AT,
        "updated_at": AT,
    }


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def test_a_batch_reads_its_candidates_by_index_before_any_statistics(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await pg_database("crm_plans")
    await upgrade_async(url, SERVICE.migrations)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            rows = [customer(n) for n in range(CUSTOMERS)]
            await connection.execute(insert(store.Customer), rows)
            await connection.execute(
                insert(store.MatchKey),
                [{"customer_id": r["id"], "key": f"0:{r['last_name']}"} for r in rows],
            )
            assert not await connection.scalar(
                text("SELECT count(*) FROM pg_stats WHERE tablename = 'customers'")
            )  # no statistics yet
            compiled = store._CANDIDATES_OF_BATCH_ON_POSTGRESQL.compile(dialect=engine.dialect)
            values = compiled.construct_params(
                {
                    "keys": ["0:surname007", "0:surname100"],
                    "sort_keys": ["surname050 first3", "surname149 first9"],
                    "limit": 50,
                    "window": 3,
                }
            )
            asyncpg = (await connection.get_raw_connection()).driver_connection
            assert asyncpg is not None
            explained = await asyncpg.fetchval(
                f"EXPLAIN (FORMAT JSON) {compiled.string}",
                *(values[name] for name in compiled.positiontup or ()),
            )
    finally:
        await engine.dispose()
    plan = (orjson.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    scans = [
        (node["Node Type"], node.get("Index Name"))
        for node in nodes(plan)
        if node.get("Relation Name") == "customers"
    ]
    assert ("Index Scan", "ix_customers_live_sort_key_id") in scans
    assert all(kind == "Index Scan" for kind, _ in scans), scans
    assert ("Index Scan", "ix_customers_merged_into") not in scans
    sorted_relations = {
        node.get("Relation Name")
        for sort in nodes(plan)
        if sort["Node Type"] == "Sort"
        for node in nodes(sort)
    }
    assert "customers" not in sorted_relations


def test_on_sqlite_a_batch_reads_its_candidates_by_index(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    engine = create_engine(f"sqlite:///{path}")
    store.Base.metadata.create_all(engine)
    with engine.begin() as connection:
        rows = [customer(n) for n in range(CUSTOMERS)]
        connection.execute(insert(store.Customer), rows)
        connection.execute(
            insert(store.MatchKey),
            [{"customer_id": r["id"], "key": f"0:{r['last_name']}"} for r in rows],
        )
    engine.dispose()
    compiled = store._CANDIDATES_OF_BATCH_ON_SQLITE.compile(dialect=sqlite.dialect())
    values = compiled.construct_params(
        {
            "keys": json.dumps(["0:surname007", "0:surname100"]),
            "sort_keys": json.dumps(["surname050 first3", "surname149 first9"]),
            "limit": 50,
            "window": 3,
        }
    )
    with sqlite3.connect(path) as db:
        plan = db.execute(
            f"EXPLAIN QUERY PLAN {compiled.string}",
            [values[name] for name in compiled.positiontup or ()],
        ).fetchall()
    steps = [detail for _id, _parent, _unused, detail in plan]
    on_customers = [step for step in steps if " customers " in f"{step} "]
    assert on_customers and all(step.startswith("SEARCH") for step in on_customers), steps
    assert "SEARCH customers USING INDEX ix_customers_sort_key_id (sort_key<?)" in steps
    assert "SEARCH customers USING INDEX ix_customers_sort_key_id (sort_key>?)" in steps
    assert not any("TEMP B-TREE FOR ORDER BY" in step for step in steps), steps
