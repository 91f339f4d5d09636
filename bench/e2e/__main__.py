"""End-to-end latency: from ``POST /v1/leads`` to ``lead.scored`` delivered to a consumer and
the first-contact deadline armed in sla-monitor, at 100, 300 and 500 leads/s.

Embedded: the services in this process on real ports (as ``make run``: memory bus, SQLite),
the load client in another process. Distributed: each service its own process, events over
a tansu broker, state in PostgreSQL (``bench/cluster.py``). ``lead.scored`` is timed by an
extra consumer group on the same bus; the deadline by the ``armed_at`` sla-monitor stores.
Each rate starts, in both modes, with a few leads sent and worked off before the measured window
(the distributed mode's also lets the consumer groups join).
Targets (2 cores) at 300/s: p99 < 50 ms embedded, < 250 ms distributed.

CPU: embedded, the one process's CPU per accepted lead. Distributed, each process's
(``cpu_ms_per_lead_<part>``: tansu, each service, the PostgreSQL backends of the cluster's
databases in all and per service, the load client, this process), read from ``/proc``
(``bench/cluster.py: CpuMeter``) from the start of the load until the cluster is back to
the idle CPU measured just before it (``idle_cpu_ms_per_s_<part>``).

Usage: ``python -m bench.e2e [--mode embedded|distributed|both] [--rates 10,100,300,500]
[--seconds 8]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from bench.record import Figure, record
from leadpact.bus import Message
from leadpact.bus.memory import MemoryBus
from leadpact.embedded import embedded_apps
from leadpact.events import decode
from leadpact.service import serve_all
from leadpact.settings import Settings

if TYPE_CHECKING:
    from bench.cluster import CpuMeter

# 10/s sits below the ceiling (the latency of the pipeline itself); 100-500 are the
# rates the issue names (above the ceiling they measure the queue).
RATES = (10, 100, 300, 500)
SECONDS = 8.0
# The services on the measured path and beside it (all five, as `make run` starts them).
SERVICES = ("intake", "scoring", "sla-monitor", "feedback", "crm-sync")
# Leads sent (at WARM_UP_RATE per second, for one second) and worked off before the measured
# window: a lead that is the first through a code path pays one-time costs (SQL compiled and
# cached, lazy imports, first connections) that the steady state never sees again.
WARM_UP_RATE = 5
TARGETS = {"embedded": "< 50 ms", "distributed": "< 250 ms"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def armed_times(db: Path) -> dict[str, float]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT lead_id, armed_at FROM sla_deadlines WHERE clause = 'first_contact'"
        ).fetchall()
    return {lead: _epoch(at) for lead, at in rows}


def _epoch(value: str) -> float:
    from datetime import UTC, datetime

    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


async def run_load(intake: str, rate: int, var: Path, seconds: float) -> tuple[dict, dict]:
    """The open-loop load client as its own process; returns (sent times, its summary)."""
    sent_file = var / "sent.json"
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load", "--intake", intake, "--rate", str(rate),
        "--seconds", str(seconds), "--record", str(sent_file),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await load.communicate()
    sent: dict[str, float] = json.loads(sent_file.read_text())
    return sent, json.loads(out.decode().strip().splitlines()[-1])


async def settle(window: float = 0.5, busy: float = 0.05, limit: float = 60) -> None:
    """Until this process is idle (under ``busy`` of a core over ``window``): every service
    has worked off what the load left it, crm-sync and feedback included."""
    for _ in range(int(limit / window)):
        before = time.process_time()
        await asyncio.sleep(window)
        if time.process_time() - before < busy * window:
            return


async def wait_for(scored: dict[str, float], sent: dict[str, float], limit: float = 30) -> None:
    """Until every sent lead was scored, or ``limit`` seconds for the stragglers."""
    for _ in range(int(limit / 0.2)):
        if len(scored.keys() & sent.keys()) >= len(sent):
            return
        await asyncio.sleep(0.2)


async def warm_up(intake: str, var: Path, scored: dict[str, float]) -> None:
    """A few leads all the way through, then wait until every service is idle again.

    Without it the first leads of the measured window paid the cold path (10/s runs: the
    first five leads at 3-4x the median, ~400 ms, each queued behind the one before), and with
    80 leads a run's p99 is its slowest lead: the figure showed the start of the process, not
    the pipeline (notes/issue-9-latency.md)."""
    warm, _ = await run_load(intake, WARM_UP_RATE, var, 1)
    await wait_for(scored, warm)
    await settle()


def figures_of(
    sent: dict[str, float], scored: dict[str, float], armed: dict[str, float], http: dict
) -> dict[str, Any]:
    to_scored = [(scored[k] - t) * 1000 for k, t in sent.items() if k in scored]
    to_armed = [(armed[k] - t) * 1000 for k, t in sent.items() if k in armed]
    return {
        "sent": http["sent"],
        "errors": http["errors"],
        "accepted": len(sent),
        "achieved_per_s": http["rate_per_s"],
        "http_p99_ms": http["p99_ms"],
        "scored_p50_ms": pct(to_scored, 0.5),
        "scored_p99_ms": pct(to_scored, 0.99),
        "armed_p50_ms": pct(to_armed, 0.5),
        "armed_p99_ms": pct(to_armed, 0.99),
        "armed": len(to_armed),
    }


def count_statements(apps: dict[str, tuple[Any, int]]) -> dict[str, int]:
    """SQL statements each service runs (counted as they go to the driver)."""
    counts = dict.fromkeys(apps, 0)
    for name, (app, _) in apps.items():

        def count(*_args: Any, name: str = name) -> None:
            counts[name] += 1

        event.listen(app.state.ctx.db.engine.sync_engine, "before_cursor_execute", count)
    return counts


def cpu_per_lead(cpu_seconds: float, leads: int) -> dict[str, float]:
    """CPU the whole embedded process spent per accepted lead, all five services: unlike
    latency, it does not depend on what else the machine is running."""
    return {"cpu_ms_per_lead": round(cpu_seconds * 1000 / max(1, leads), 2)}


async def one_rate(rate: int, var: Path, seconds: float = SECONDS) -> dict[str, Any]:
    ports = {name: free_port() for name in SERVICES}
    bus = MemoryBus()
    settings = Settings(log_level="WARNING", relay_poll_seconds=0.2)
    apps = embedded_apps(var, base=settings, bus=bus, ports=ports, only=list(SERVICES))
    scored: dict[str, float] = {}

    async def on_scored(msg: Message) -> None:
        scored.setdefault(decode(msg.value).subject, time.time())

    server = asyncio.create_task(
        serve_all({n: (app, "127.0.0.1", port) for n, (app, port) in apps.items()})
    )
    await asyncio.sleep(2)  # servers binding and migrating
    await bus.subscribe("bench-e2e", ["lead.scored"], on_scored)
    await warm_up(f"http://127.0.0.1:{ports['intake']}", var, scored)
    statements = count_statements(apps)
    cpu_before = time.process_time()
    sent, http = await run_load(f"http://127.0.0.1:{ports['intake']}", rate, var, seconds)
    await wait_for(scored, sent)
    await settle()
    cpu = time.process_time() - cpu_before
    for app, _ in apps.values():
        app.state.ctx.ready = False
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server
    figures = figures_of(sent, scored, armed_times(var / "sla-monitor.db"), http)
    per_lead = {
        f"statements_per_lead_{name}": round(n / max(1, len(sent)), 1)
        for name, n in statements.items()
    }
    return figures | cpu_per_lead(cpu, len(sent)) | per_lead


async def one_rate_distributed(rate: int, var: Path, seconds: float = SECONDS) -> dict[str, Any]:
    import asyncpg

    from bench.cluster import Cluster, CpuMeter, pg_dsn
    from leadpact.bus import bus_from_url

    cluster = await Cluster(var, services=SERVICES).start()
    scored: dict[str, float] = {}

    async def on_scored(msg: Message) -> None:
        scored.setdefault(decode(msg.value).subject, time.time())

    bus = bus_from_url(
        Settings(bus_url=f"kafka://{cluster.bootstrap}", kafka_enable_idempotence=False,
                 kafka_partitions=3)
    )  # fmt: skip
    try:
        await bus.start()
        await bus.subscribe("bench-e2e", ["lead.scored"], on_scored)
        # Warm-up: the consumer groups have joined once a first lead went all the way.
        warm, _ = await run_load(cluster.url("intake"), 5, var, 1)
        await wait_for(scored, warm, 60)
        meter = CpuMeter(cluster)
        idle = await idle_cpu(meter)
        await meter.start()
        window = time.monotonic()
        own = time.process_time()
        load = children_cpu()
        sent, http = await run_load(cluster.url("intake"), rate, var, seconds)
        load = children_cpu() - load
        await wait_for(scored, sent)
        spent = await settle_cluster(meter, idle)
        spent["load"] = load
        spent["bench"] = time.process_time() - own
        window = time.monotonic() - window
        conn = await asyncpg.connect(pg_dsn(cluster.databases["sla-monitor"]))
        try:
            rows = await conn.fetch(
                "SELECT lead_id, armed_at FROM sla_deadlines WHERE clause = 'first_contact'"
            )
        finally:
            await conn.close()
        armed = {r["lead_id"]: r["armed_at"].timestamp() for r in rows}
        return figures_of(sent, scored, armed, http) | cpu_report(spent, idle, window, len(sent))
    finally:
        await bus.stop()
        await cluster.close()


# The parts of a distributed run whose CPU counts as the pipeline's (cpu_ms_per_lead, as
# the embedded process's): not the load client, nor this process's scored-consumer.
PIPELINE = ("tansu", *SERVICES, "postgres")


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended: the load client's, since
    the services (children too) are still running."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def idle_cpu(meter: CpuMeter, seconds: float = 3.0) -> dict[str, float]:
    """CPU each part spends per second with no lead in flight: the consumers' fetch polls,
    the relays' polls, heartbeats. Part of every lead's figure below, as a floor."""
    await meter.start()
    await asyncio.sleep(seconds)
    return {name: cpu / seconds for name, cpu in (await meter.stop()).items()}


async def settle_cluster(
    meter: CpuMeter,
    idle: dict[str, float],
    window: float = 0.5,
    busy: float = 0.05,
    limit: float = 60,
) -> dict[str, float]:
    """Until the cluster is back to its idle CPU (within ``busy`` of a core over ``window``):
    every service has worked off what the load left it. Returns the CPU spent since
    ``meter.start()``."""
    floor = sum(idle.values())
    spent = await meter.stop()
    for _ in range(int(limit / window)):
        await asyncio.sleep(window)
        now = await meter.stop()
        if sum(now.values()) - sum(spent.values()) < (floor + busy) * window:
            return now
        spent = now
    return spent


def cpu_report(
    spent: dict[str, float], idle: dict[str, float], window: float, leads: int
) -> dict[str, Any]:
    """CPU ms per accepted lead for each process (``cpu_ms_per_lead_<part>``) and for the
    pipeline (``cpu_ms_per_lead``, as the embedded figure: services, broker, database).

    Each part's idle CPU (ms per second: fetch and relay polls, heartbeats) is included in
    those for the ``cpu_window_s`` the measurement lasted, which grows when the machine is
    busy; ``cpu_ms_per_lead_net`` is the pipeline's figure without it: what a lead costs
    beyond the floor that does not grow with the rate."""
    per_lead = {
        f"cpu_ms_per_lead_{name}": round(cpu * 1000 / max(1, leads), 2)
        for name, cpu in sorted(spent.items(), key=lambda item: -item[1])
    }
    pipeline = sum(spent.get(name, 0.0) for name in PIPELINE)
    floor = sum(idle.get(name, 0.0) for name in PIPELINE) * window
    idle_ms = {f"idle_cpu_ms_per_s_{name}": round(cpu * 1000, 1) for name, cpu in idle.items()}
    return (
        {
            "cpu_ms_per_lead": round(pipeline * 1000 / max(1, leads), 2),
            "cpu_ms_per_lead_net": round(max(0.0, pipeline - floor) * 1000 / max(1, leads), 2),
        }
        | per_lead
        | {"cpu_window_s": round(window, 1)}
        | idle_ms
    )


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="end-to-end latency benchmark")
    parser.add_argument("--mode", choices=["embedded", "distributed", "both"], default="both")
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    modes = ["embedded", "distributed"] if args.mode == "both" else [args.mode]
    figures: dict[str, Figure] = {}
    for mode in modes:
        for rate in rates:
            with tempfile.TemporaryDirectory() as tmp:
                run = one_rate if mode == "embedded" else one_rate_distributed
                result = asyncio.run(run(rate, Path(tmp), args.seconds))
            print(json.dumps({"mode": mode, "rate": rate, **result}), flush=True)
            for key in ("scored_p50_ms", "scored_p99_ms", "armed_p50_ms", "armed_p99_ms"):
                target = TARGETS[mode] if rate == 300 and key == "armed_p99_ms" else None
                figures[f"{mode}_{rate}_{key}"] = Figure(
                    round(result[key], 2), "ms", "lower", target
                )
            if "cpu_ms_per_lead" in result:
                figures[f"{mode}_{rate}_cpu_ms_per_lead"] = Figure(
                    result["cpu_ms_per_lead"], "ms", "lower"
                )
            figures[f"{mode}_{rate}_achieved"] = Figure(
                result["achieved_per_s"], "leads/s", "higher"
            )
            # Percentiles count only the leads armed within the straggler wait: say how many.
            figures[f"{mode}_{rate}_armed_ratio"] = Figure(
                round(result["armed"] / max(1, result["accepted"]), 3), "ratio", "higher", "1.0"
            )
    record(
        "e2e",
        figures,
        notes=f"{args.seconds:.0f} s per rate, open-loop load client process; services "
        f"{', '.join(SERVICES)}; distributed = processes + tansu + PostgreSQL",
    )


if __name__ == "__main__":
    main()
