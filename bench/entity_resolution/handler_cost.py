"""crm-sync's cost per lead: CPU and SQL statements of its event handlers, on SQLite (the
embedded mode's store) and on PostgreSQL (the distributed mode's).

crm-sync is wired by its own bootstrap (``build_context`` + its setup) and the events go
through the real consumer path, :class:`leadpact.consumer.EventDispatcher` (decode, inbox
claim, handler, outbox, commit): one after the other, or with ``--batch N`` in consumer
batches of N (``handle_batch``: crm-sync's batch handler for the topics that have one, the
event handler in turn for the others; each N on a fresh database). Figures per event type:

- ``cpu_ms``: CPU of the whole consumer path per event (``time.process_time``: robust to a
  shared, loaded machine, unlike wall time);
- ``handler_cpu_ms``: the part spent inside crm-sync's handler (or batch handler);
- ``statements``: SQL statements per event (a ``before_cursor_execute`` listener).

The first ``--warmup`` events of each type are not counted (imports, statement caches).
People: ``e2e`` is the shape ``bench/load.py --companies 1`` posts (same first name and company for
everyone, so every lead finds a full block of candidates — the case the end-to-end
benchmark measures), ``varied`` mixes names, companies and countries.

Usage: ``python -m bench.entity_resolution.handler_cost [--leads 2000] [--backend sqlite
postgres] [--people e2e] [--batch 1 4 16] [--profile out.prof]``. Prints one JSON line per
backend, batch size and type.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bench.cluster import scratch_database
from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.consumer import EventDispatcher
from leadpact.embedded import load_services
from leadpact.events import CloudEvent, EventData, LeadContacted, LeadCreated, envelope
from leadpact.migrations import upgrade_async
from leadpact.service import build_context, inject
from leadpact.settings import Settings

CONTRACT = Path(__file__).parents[2] / "tests" / "fixtures" / "contracts" / "fast.yaml"
FIRST = ["Ana", "Luis", "Marta", "Jorge", "Lucía", "Pablo", "Elena", "Hugo", "Sara", "Iván"]
LAST = ["García", "Martín", "López", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Moreno"]
COMPANY = ["Acme Robotics", "Globex", "Initech S.L.", "Umbrella GmbH", "Hooli", "Vandelay"]
COUNTRY = ["ES", "PT", "FR", "DE"]


def person(i: int, people: str, rng: random.Random) -> dict[str, Any]:
    """Lead ``i``: always its own email and phone (intake folds repeats before crm-sync)."""
    contact = {
        "email": f"lead.{i}.{uuid.uuid4().hex[:6]}@example.com",
        "phone": f"+3461{rng.randrange(10**7):07d}",
    }
    if people == "e2e":  # bench/load.py --companies 1
        return {
            **contact,
            "first_name": "Load",
            "last_name": f"Test {i}",
            "company": "Acme Robotics",
            "title": "Head of Operations",
        }
    return {
        **contact,
        "first_name": rng.choice(FIRST),
        "last_name": f"{rng.choice(LAST)} {rng.choice(LAST)}",
        "company": rng.choice(COMPANY),
        "title": "Buyer",
        "country": rng.choice(COUNTRY),
    }


class Meter:
    """CPU and statements, split into the whole consumer path and the handler's part."""

    def __init__(self) -> None:
        self.statements = 0
        self.handler_cpu = 0.0

    def on_statement(self, *_: Any) -> None:
        self.statements += 1

    def timed(self, handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def run(event: CloudEvent[Any], uow: Any, clock: Any) -> None:
            started = time.process_time()
            try:
                await handler(event, uow, clock)
            finally:
                self.handler_cpu += time.process_time() - started

        return run

    def timed_batch(
        self, handler: Callable[..., Awaitable[None]]
    ) -> Callable[..., Awaitable[None]]:
        async def run(events: Sequence[CloudEvent[Any]], uow: Any, clock: Any) -> None:
            started = time.process_time()
            try:
                await handler(events, uow, clock)
            finally:
                self.handler_cpu += time.process_time() - started

        return run


async def feed(dispatcher: EventDispatcher, messages: Sequence[Message], batch: int) -> None:
    """One by one (``batch`` 0, the dispatcher's ``__call__``) or in consumer batches."""
    if batch <= 0:
        for message in messages:
            await dispatcher(message)
        return
    for at in range(0, len(messages), batch):
        await dispatcher.handle_batch(messages[at : at + batch])


async def run(
    backend: str,
    leads: int,
    warmup: int,
    people: str,
    profile: cProfile.Profile | None,
    batch_size: int = 0,
) -> list[dict[str, Any]]:
    definition = load_services()["crm-sync"]
    meter = Meter()
    async with scratch_database(backend, "bench_crm") as url:
        await upgrade_async(url, definition.migrations)
        settings = Settings(
            database_url=url, bus_url="memory://", contract_path=CONTRACT, log_level="WARNING"
        )
        clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
        ctx = build_context(definition, settings, clock=clock, bus=MemoryBus())
        if definition.setup is not None:
            await definition.setup(ctx)
        event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", meter.on_statement)
        dispatcher = EventDispatcher(
            "leadpact-crm-sync",
            {m: meter.timed(inject(h, ctx)) for m, h in definition.event_handlers.items()},
            ctx.uow,
            ctx.clock,
            ctx.metrics,
            batch_handlers={
                m: meter.timed_batch(inject(h, ctx)) for m, h in definition.batch_handlers.items()
            },
        )
        version = ctx.contracts.current().version
        rng = random.Random(7)
        start = clock.now()
        created: list[EventData] = [
            LeadCreated(
                lead_id=f"L{i:06d}",
                created_at=start + timedelta(seconds=i),
                source={"platform": "bench"},
                **person(i, people, rng),
            )
            for i in range(leads)
        ]
        contacted: list[EventData] = [
            LeadContacted(
                lead_id=f"L{i:06d}",
                channel="phone",
                outcome="connected",
                owner="rep-1",
                contacted_at=start + timedelta(hours=1, seconds=i),
            )
            for i in range(leads)
        ]
        figures = []
        for topic, batch in (("lead.created", created), ("lead.contacted", contacted)):
            messages = [
                Message(topic, e.subject, e.to_json())
                for e in (
                    envelope(d, source="bench", time=start, contract_version=version) for d in batch
                )
            ]
            await feed(dispatcher, messages[:warmup], batch_size)
            statements, meter.handler_cpu = meter.statements, 0.0
            cpu, wall = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            await feed(dispatcher, messages[warmup:], batch_size)
            if profile is not None:
                profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = len(messages) - warmup
            figures.append(
                {
                    "benchmark": "crm_sync_handler_cost",
                    "backend": backend,
                    "people": people,
                    "batch": batch_size,
                    "topic": topic,
                    "events": n,
                    "cpu_ms": round(cpu * 1000 / n, 3),
                    "handler_cpu_ms": round(meter.handler_cpu * 1000 / n, 3),
                    "statements": round((meter.statements - statements) / n, 2),
                    "wall_ms": round(wall * 1000 / n, 3),
                }
            )
            print(json.dumps(figures[-1]), flush=True)
        async with ctx.uow() as uow:
            customers = (await uow.session.execute(text("SELECT count(*) FROM customers"))).scalar()
            reviews = (await uow.session.execute(text("SELECT count(*) FROM reviews"))).scalar()
        print(json.dumps({"backend": backend, "customers": customers, "reviews": reviews}))
        await ctx.db.dispose()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--people", choices=["e2e", "varied"], default="e2e")
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[0],
        help="consumer batch sizes (0: one by one through __call__, the default)",
    )
    parser.add_argument("--profile", help="write cProfile stats of the measured events here")
    args = parser.parse_args()
    os.environ.setdefault("LEADPACT_LOG_LEVEL", "WARNING")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    profile = cProfile.Profile() if args.profile else None
    for backend in args.backend:
        for batch in args.batch:
            asyncio.run(run(backend, args.leads, args.warmup, args.people, profile, batch))
    if profile is not None:
        profile.dump_stats(args.profile)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
