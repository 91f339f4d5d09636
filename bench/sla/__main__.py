"""The SLA engine at 1,000,000 deadlines, on PostgreSQL (the distributed mode's store).

The sla-monitor is wired by its own bootstrap (``build_context`` + its setup), so what is
measured is its real consumer path and its real deadline watch, on the wall clock:

- arming rate: ``lead.scored`` events through the sla-monitor's dispatcher (decode, inbox
  claim, handler, commit), 3 partitions in parallel, each event arming every clause;
- the store then filled to 1,000,000 open deadlines (bulk COPY: arming a million through
  the handler would take the whole run; the rows are the same the handler writes);
- memory: the process's resident set before and after the watch loaded its horizon from
  the million-row store (the watch keeps only the deadlines of the next minute in memory);
- detection lag: deadlines falling due over a few seconds while the million sit open,
  lag = the breach's detection time minus its due time, p50 / p99;
- restart recovery: the watch stopped, deadlines falling due while it is down, a new watch
  started: the time until every one of them is breached.

Usage: ``python -m bench.sla [--deadlines 1000000] [--armed 3000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bench.cluster import DATABASE_URL, pg_dsn
from bench.record import Figure, record
from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import SystemClock
from leadpact.consumer import EventDispatcher
from leadpact.embedded import load_services
from leadpact.events import LeadScored, envelope
from leadpact.migrations import upgrade_async
from leadpact.service import build_context, inject
from leadpact.settings import Settings

CONTRACT = Path(__file__).parents[2] / "tests" / "fixtures" / "contracts" / "fast.yaml"


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bulk_fill(conn: asyncpg.Connection, rows: int, version: str) -> None:
    """Open deadlines due between 1 and 30 days from now (none falls due during the run)."""
    now = datetime.now(UTC)
    batch = 100_000
    for start in range(0, rows, batch):
        records = []
        for i in range(start, min(rows, start + batch)):
            due = now + timedelta(days=1, seconds=(i * 2.6) % (29 * 86400))
            records.append(
                (f"bulk-{i}", "first_contact", now, now, due, due - timedelta(hours=1),
                 "website", version, "open")
            )  # fmt: skip
        await conn.copy_records_to_table(
            "sla_deadlines",
            records=records,
            columns=["lead_id", "clause", "started_at", "armed_at", "due_at", "at_risk_at",
                     "source", "contract_version", "status"],
        )  # fmt: skip
    await conn.execute("ANALYZE sla_deadlines")


async def wait_breached(conn: asyncpg.Connection, prefix: str, count: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done = await conn.fetchval(
            "SELECT count(*) FROM sla_deadlines WHERE status = 'breached' AND lead_id LIKE $1",
            prefix + "%",
        )
        if done >= count:
            return True
        await asyncio.sleep(0.1)
    return False


async def due_soon(conn: asyncpg.Connection, prefix: str, count: int, start: datetime,
                   spread: float, version: str) -> list[datetime]:  # fmt: skip
    """``count`` open first-contact deadlines due from ``start`` over ``spread`` seconds."""
    dues = [start + timedelta(seconds=spread * i / count) for i in range(count)]
    now = datetime.now(UTC)
    await conn.copy_records_to_table(
        "sla_deadlines",
        records=[
            (f"{prefix}{i}", "first_contact", now, now, due, None, "website", version, "open")
            for i, due in enumerate(dues)
        ],
        columns=["lead_id", "clause", "started_at", "armed_at", "due_at", "at_risk_at",
                 "source", "contract_version", "status"],
    )  # fmt: skip
    return dues


async def lags(conn: asyncpg.Connection, prefix: str) -> list[float]:
    rows = await conn.fetch(
        "SELECT extract(epoch FROM resolved_at - due_at) * 1000 AS lag FROM sla_deadlines"
        " WHERE lead_id LIKE $1 AND status = 'breached'",
        prefix + "%",
    )
    return [float(r["lag"]) for r in rows]


async def run(deadlines: int, armed: int) -> dict[str, Figure]:
    definition = load_services()["sla-monitor"]
    db_name = f"bench_sla_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn(DATABASE_URL), timeout=5)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    url = make_url(DATABASE_URL).set(database=db_name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(pg_dsn(url))
    figures: dict[str, Figure] = {}
    try:
        settings = Settings(
            database_url=url, bus_url="memory://", contract_path=CONTRACT, log_level="WARNING"
        )
        await upgrade_async(url, definition.migrations)
        ctx = build_context(definition, settings, clock=SystemClock(), bus=MemoryBus())
        if definition.setup is not None:
            await definition.setup(ctx)
        version = ctx.contracts.current().version
        dispatcher = EventDispatcher(
            "leadpact-sla-monitor",
            {m: inject(h, ctx) for m, h in definition.event_handlers.items()},
            ctx.uow,
            ctx.clock,
            ctx.metrics,
        )

        # 1. Arming through the consumer path, 3 partitions in parallel.
        events = [
            envelope(
                LeadScored(lead_id=f"armed-{i}", points=60, tier="mql", source="website",
                           scored_at=datetime.now(UTC)),
                source="bench", time=datetime.now(UTC), contract_version=version,
            )
            for i in range(armed)
        ]  # fmt: skip

        async def partition(p: int) -> None:
            for event in events[p::3]:
                await dispatcher(Message("lead.scored", event.subject, event.to_json()))

        started = time.perf_counter()
        await asyncio.gather(*(partition(p) for p in range(3)))
        elapsed = time.perf_counter() - started
        per_lead = await conn.fetchval(
            "SELECT count(*) FROM sla_deadlines WHERE lead_id LIKE 'armed-%'"
        )
        figures["arming_leads_per_s"] = Figure(round(armed / elapsed, 1), "leads/s", "higher")
        figures["arming_deadlines_per_s"] = Figure(
            round(per_lead / elapsed, 1), "deadlines/s", "higher"
        )
        print(f"armed {armed} leads ({per_lead} deadlines) in {elapsed:.1f}s", flush=True)

        # 2. Fill to a million open deadlines.
        t0 = time.perf_counter()
        await bulk_fill(conn, deadlines - per_lead, version)
        total = await conn.fetchval("SELECT count(*) FROM sla_deadlines WHERE status = 'open'")
        print(f"filled to {total} open deadlines in {time.perf_counter() - t0:.1f}s", flush=True)
        figures["open_deadlines"] = Figure(float(total), "deadlines")
        size = await conn.fetchval("SELECT pg_total_relation_size('sla_deadlines')")
        figures["store_mb"] = Figure(round(size / 2**20, 1), "MB", "lower")

        # 3. The watch starts over a million open deadlines; memory; 4. detection lag.
        watch = ctx.extras["deadline_watch"]
        rss_before = rss_mb()
        dues = await due_soon(
            conn, "lag-", 500, datetime.now(UTC) + timedelta(seconds=3), 5.0, version
        )
        t0 = time.perf_counter()
        await watch.start()
        for due in dues:
            watch.armed(due)  # as the handler tells it
        ok = await wait_breached(conn, "lag-", len(dues), 60)
        detect = await lags(conn, "lag-")
        figures["detection_lag_p50_ms"] = Figure(round(pct(detect, 0.5), 1), "ms", "lower")
        figures["detection_lag_p99_ms"] = Figure(round(pct(detect, 0.99), 1), "ms", "lower")
        figures["watch_rss_mb"] = Figure(round(rss_mb(), 1), "MB", "lower")
        figures["watch_rss_growth_mb"] = Figure(round(rss_mb() - rss_before, 1), "MB", "lower")
        print(f"lag: {len(detect)} breached (all: {ok}) in {time.perf_counter() - t0:.1f}s")

        # 5. Restart recovery: deadlines fall due while the watch is down.
        await watch.stop()
        past = datetime.now(UTC) - timedelta(seconds=30)
        missed = await due_soon(conn, "down-", 500, past, 20.0, version)
        t0 = time.perf_counter()
        await watch.start()
        ok = await wait_breached(conn, "down-", len(missed), 120)
        recovery = time.perf_counter() - t0
        figures["restart_recovery_s"] = Figure(round(recovery, 2), "s", "lower")
        print(f"recovered {len(missed)} missed deadlines in {recovery:.2f}s (all: {ok})")
        await watch.stop()
        await ctx.db.dispose()
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="SLA engine at a million deadlines")
    parser.add_argument("--deadlines", type=int, default=1_000_000)
    parser.add_argument("--armed", type=int, default=3000, help="leads armed via the handler")
    args = parser.parse_args()
    figures = asyncio.run(run(args.deadlines, args.armed))
    record(
        "sla",
        figures,
        notes=f"PostgreSQL, {args.deadlines} deadlines, {args.armed} leads armed through the "
        "sla-monitor's dispatcher; wall clock, default 60 s horizon, batch 500",
    )


if __name__ == "__main__":
    main()
