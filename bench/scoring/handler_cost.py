"""scoring's cost per ``lead.created``: CPU and SQL statements of the consumer path
(decode, inbox claim, handler or batch handler, outbox, commit) at consumer batch sizes 1, 4
and 16, with and without a trained model, on SQLite (embedded mode) and PostgreSQL
(distributed mode).

The service is wired by its own bootstrap (``build_context`` + setup +
``build_dispatcher``), so its batch handlers are used exactly as the consumer uses them: a
batch of size 1 goes through the event handler, a larger one through the batch handler.
Figures per configuration:

- ``cpu_ms``: process CPU per event (``time.process_time``: robust to a shared machine);
- ``statements``: SQL statements per event (a ``before_cursor_execute`` listener; an
  executemany counts once, as it is one call into the driver).

``trained``: a champion fitted on synthetic labelled leads (the features the retrainer
uses), so every lead also goes through the LightGBM model and its explanation. The relay is
not started: its statements are not part of the handler's cost.

Usage: ``python -m bench.scoring.handler_cost [--leads 480] [--batch 1 4 16] [--backend
sqlite postgres] [--model untrained trained] [--profile out.prof]``. One JSON line each.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import event

from bench.cluster import scratch_database
from leadpact.bus.base import Message
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.events import LeadCreated, envelope
from leadpact.migrations import upgrade_async
from leadpact.service import build_context, build_dispatcher
from leadpact.settings import Settings
from scoring.app import SERVICE
from scoring.domain.rules import lead_fields
from scoring.features import live_record
from scoring.model.calibrated import fit
from scoring.model.schema import Kind, infer_schema
from scoring.predictor import ModelPredictor
from scoring.runtime import ScoringRuntime, runtime

CONTRACT = Path(__file__).parents[2] / "tests" / "fixtures" / "contracts" / "fast.yaml"
TITLES = ["Head of Operations", "CEO", "Office Manager", "Intern", "VP Sales", "Buyer"]
INDUSTRIES = ["saas", "retail", "manufacturing", "finance"]
COUNTRIES = ["ES", "PT", "FR", "DE"]


def lead(i: int, at: datetime) -> LeadCreated:
    """bench/load.py's --companies 1 lead, with the attributes the model reads varied."""
    return LeadCreated(
        lead_id=f"L{i:06d}-{uuid.uuid4().hex[:6]}",
        email=f"load.{i}@acme-robotics.example" if i % 7 else f"load.{i}@gmail.com",
        phone=f"+3461{i:07d}",
        first_name="Load",
        last_name=f"Test {i}",
        company="Acme Robotics",
        title=TITLES[i % len(TITLES)],
        company_size=(i * 37) % 900,
        industry=INDUSTRIES[i % len(INDUSTRIES)],
        country=COUNTRIES[(i // 3) % len(COUNTRIES)],
        source={"platform": "loadtest", "campaign": "bench"},
        created_at=at,
    )


def champion(scoring: ScoringRuntime, free_mail: list[str], now: datetime) -> ModelPredictor:
    """A model trained as the retrainer would, on 400 synthetic labelled leads."""
    settings = scoring.settings
    kinds: dict[str, Kind] = {k: v for k, v in settings.features.items()}  # type: ignore[misc]
    for kind in settings.activity_types:
        kinds[f"activity:{kind}"] = "numeric"
        kinds[f"days_since:{kind}"] = "numeric"
    rng = np.random.default_rng(3)
    records = []
    for i in range(400):
        raw = lead(i, now).model_dump(
            mode="json", exclude={"lead_id", "source", "consent", "raw_ref"}
        )
        records.append(
            live_record(
                {**lead_fields(raw), "source": "loadtest"},
                [],
                activity_kinds=settings.activity_types,
                half_life=settings.activity_half_life,
                free_mail=free_mail,
                now=now,
            )
        )
    likely = {"CEO": 0.7, "VP Sales": 0.6, "Head of Operations": 0.5}
    y = np.array([int(rng.random() < likely.get(str(r.get("title")), 0.15)) for r in records])
    schema = infer_schema(records, list(kinds), kinds)
    model = fit(schema, schema.encode(records), y)
    model.version = "bench-model"
    return ModelPredictor(model)


async def run(
    backend: str,
    trained: bool,
    batch: int,
    leads: int,
    warmup: int,
    profile: cProfile.Profile | None,
) -> dict[str, Any]:
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    async with scratch_database(backend, "bench_scoring") as url:
        await upgrade_async(url, SERVICE.migrations)
        settings = Settings(
            database_url=url, bus_url="memory://", contract_path=CONTRACT, log_level="WARNING"
        )
        clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
        ctx = build_context(SERVICE, settings, clock=clock, bus=MemoryBus())
        if SERVICE.setup is not None:
            await SERVICE.setup(ctx)
        scoring = runtime(ctx)
        contract = ctx.contracts.current()
        if trained:
            free_mail = contract.lists.get(scoring.settings.free_mail_list, [])
            scoring.predictor = champion(scoring, free_mail, clock.now())
        dispatcher = build_dispatcher(SERVICE, ctx)
        event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", count)
        start = clock.now()
        messages = [
            Message("lead.created", e.subject, e.to_json())
            for e in (
                envelope(
                    lead(i, start + timedelta(seconds=i)),
                    source="bench",
                    time=start,
                    contract_version=contract.version,
                )
                for i in range(warmup + leads)
            )
        ]
        for at in range(0, warmup, batch):
            await dispatcher.handle_batch(messages[at : min(at + batch, warmup)])
        counted, cpu = statements, time.process_time()
        if profile is not None:
            profile.enable()
        for at in range(warmup, warmup + leads, batch):
            await dispatcher.handle_batch(messages[at : at + batch])
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - cpu
        figure = {
            "benchmark": "scoring_handler_cost",
            "backend": backend,
            "model": "trained" if trained else "untrained",
            "batch": batch,
            "events": leads,
            "cpu_ms": round(cpu * 1000 / leads, 3),
            "statements": round((statements - counted) / leads, 2),
            "at": datetime.now(UTC).strftime("%H:%M:%S"),
        }
        print(json.dumps(figure), flush=True)
        await ctx.db.dispose()
        return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=480)
    parser.add_argument("--warmup", type=int, default=48)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--model", nargs="+", default=["untrained", "trained"])
    parser.add_argument("--profile", help="write cProfile stats of the measured events here")
    args = parser.parse_args()
    os.environ.setdefault("LEADPACT_LOG_LEVEL", "WARNING")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    profile = cProfile.Profile() if args.profile else None
    for backend in args.backend:
        for model in args.model:
            for batch in args.batch:
                asyncio.run(
                    run(backend, model == "trained", batch, args.leads, args.warmup, profile)
                )
    if profile is not None:
        profile.dump_stats(args.profile)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
