"""The sla-monitor's cost per lead on its hot topics, by consumer batch size: CPU and SQL
statements per ``lead.created`` and per ``lead.scored`` (MQL), on SQLite (the embedded
mode's store) and on PostgreSQL (the distributed mode's).

The sla-monitor is wired by its own bootstrap (``build_context`` + its setup, the default
contract with its routing section) and the events go through its real consumer,
``build_dispatcher(...).handle_batch``: decode, one inbox claim per batch, the batch
handler (or the event handler for a batch of one), outbox, commit. All events of a batch
share a partition, as a bus delivers them. Figures per backend and batch size:

- ``created_cpu_ms`` / ``scored_cpu_ms``: CPU of the whole consumer path per event
  (``time.process_time``: robust to a shared, loaded machine, unlike wall time);
- ``created_statements`` / ``scored_statements``: SQL statements per event (claim and
  outbox included; a ``before_cursor_execute`` listener).

Leads come in over a few countries and company sizes (both routing teams and several
rules get turns); a Tuesday 10:00 UTC clock keeps every member in hours. The first
``--warmup`` events of each topic are not counted (imports, statement caches, the
round-robin rows created on first use).

Usage: ``python -m bench.sla.handler_cost [--leads 400] [--batch 1 4 16] [--backend sqlite
postgres]``. Prints one JSON line per backend and batch size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from bench.cluster import scratch_database
from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.events import EventData, LeadCreated, LeadScored, envelope
from leadpact.migrations import upgrade_async
from leadpact.service import build_context, build_dispatcher
from leadpact.settings import Settings
from sla_monitor.app import SERVICE

COUNTRIES = ["ES", "PT", "DE", "FR", "US", "GB"]
START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def leads(count: int, version: str) -> tuple[list[Message], list[Message]]:
    """``lead.created`` and ``lead.scored`` (MQL) messages of ``count`` leads."""
    rng = random.Random(7)
    created: list[EventData] = []
    scored: list[EventData] = []
    for i in range(count):
        lead_id = f"L{i:06d}"
        created.append(
            LeadCreated(
                lead_id=lead_id,
                created_at=START,
                country=rng.choice(COUNTRIES),
                company_size=rng.choice([10, 60, 200, 800]),
                source={"platform": "bench"},
            )
        )
        scored.append(
            LeadScored(
                lead_id=lead_id,
                points=70,
                probability=rng.choice([0.4, 0.7, 0.9]),
                tier="mql",
                source="bench",
                scored_at=START,
            )
        )

    def messages(items: list[EventData]) -> list[Message]:
        found = []
        for data in items:
            e = envelope(data, source="bench", time=START, contract_version=version)
            found.append(Message(e.topic, e.subject, e.to_json(), partition=1))
        return found

    return messages(created), messages(scored)


async def measure(
    dispatcher: EventDispatcher, msgs: list[Message], batch: int, warmup: int, count: list[int]
) -> tuple[float, float]:
    """CPU ms and statements per event of ``msgs`` after ``warmup``, in batches."""
    for i in range(0, warmup, batch):
        await dispatcher.handle_batch(msgs[i : min(warmup, i + batch)])
    statements, cpu = count[0], time.process_time()
    for i in range(warmup, len(msgs), batch):
        await dispatcher.handle_batch(msgs[i : i + batch])
    measured = len(msgs) - warmup
    cpu_ms = (time.process_time() - cpu) * 1000 / measured
    return round(cpu_ms, 3), round((count[0] - statements) / measured, 2)


async def run(backend: str, batch: int, count: int, warmup: int) -> dict[str, Any]:
    async with scratch_database(backend, "bench_sla_cost") as url:
        await upgrade_async(url, SERVICE.migrations)
        settings = Settings(database_url=url, bus_url="memory://", log_level="WARNING")
        ctx = build_context(SERVICE, settings, clock=ManualClock(START), bus=MemoryBus())
        if SERVICE.setup is not None:
            await SERVICE.setup(ctx)
        statements = [0]

        def counted(*_: Any) -> None:
            statements[0] += 1

        event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", counted)
        dispatcher = build_dispatcher(SERVICE, ctx)
        created, scored = leads(warmup + count, ctx.contracts.current().version)
        created_cpu, created_statements = await measure(
            dispatcher, created, batch, warmup, statements
        )
        scored_cpu, scored_statements = await measure(dispatcher, scored, batch, warmup, statements)
        failed = ctx.metrics.registry.get_sample_value(
            "leadpact_event_batches_failed_total", {"topic": "lead.scored"}
        )
        await ctx.db.dispose()
    return {
        "benchmark": "sla_handler_cost",
        "backend": backend,
        "batch": batch,
        "events": count,
        "created_cpu_ms": created_cpu,
        "created_statements": created_statements,
        "scored_cpu_ms": scored_cpu,
        "scored_statements": scored_statements,
        "failed_batches": failed or 0.0,
        "utc": datetime.now(UTC).strftime("%H:%M:%S"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=96)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"])
    args = parser.parse_args()
    os.environ.setdefault("LEADPACT_LOG_LEVEL", "WARNING")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for backend in args.backend:
        for batch in args.batch:
            figures = asyncio.run(run(backend, batch, args.leads, args.warmup))
            print(json.dumps(figures), flush=True)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
