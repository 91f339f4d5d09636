"""Durable leads per second through ``POST /v1/leads`` on PostgreSQL, against a bare FastAPI
echo endpoint with the same server settings, in one run on this machine.

    python -m bench.intake [--seconds 5] [--rounds 3] [--connections 32]

Each server runs in its own process (uvicorn, one worker, loopback); the load client is a
third process. Intake uses a fresh PostgreSQL database (LEADPACT_TEST_DATABASE_URL's server)
and the memory bus; a 202 means the lead and its event are committed. The customer check is
off (crm-sync is not part of this measurement). Both servers run side by side and are
loaded in turn, alternating, ``--rounds`` times each: on a machine shared with other jobs
both then see the same conditions; the medians are recorded. Each run also reports the CPU
the server and the client used, so a reader can tell what limited the rate (a server well
below 100 % of a core was held back by the client or the machine). Prints the figures and
the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.record import Figure, record

BASE_URL = os.environ.get(
    "LEADPACT_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_dsn() -> str:
    url = make_url(BASE_URL).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def database() -> Iterator[str]:
    name = f"lp_bench_intake_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def server(kind: str, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.intake.servers", kind, str(port)],
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if kind == "echo" or httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    httpx.get(url, timeout=1)
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.2)
        yield Server(kind, url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class Server:
    kind: str
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, to tell how loaded it was."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def load(url: str, connections: int, seconds: float, limit: int) -> dict[str, Any]:
    args = [url, str(connections), str(seconds), str(limit)]
    out = subprocess.run(
        [sys.executable, "-m", "bench.intake.client", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def measure(target: Server, connections: int, seconds: float) -> dict[str, Any]:
    """One closed-loop run, with the CPU the server and the client used meanwhile: a server
    below ~100 % of a core was not what limited the rate (the client or the machine was)."""
    cpu, (busy, total) = target.cpu_seconds(), machine_busy()
    result = load(target.url, connections, seconds, 1_000_000)
    cpu, busy, total = (
        target.cpu_seconds() - cpu,
        machine_busy()[0] - busy,
        machine_busy()[1] - total,
    )
    wall = float(result["seconds"])
    accepted = max(1, int(result["accepted"]))
    return {
        **result,
        "server_cpu_percent": round(100 * cpu / wall),
        "server_cpu_us_per_request": round(1e6 * cpu / accepted),
        "client_cpu_percent": round(100 * float(result["client_cpu_seconds"]) / wall),
        "machine_busy_percent": round(100 * busy / total) if total else 0,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(run[key]) for run in runs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server")
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {"intake": [], "echo": []}
    with database() as url:
        env = {
            "LEADPACT_DATABASE_URL": url,
            "LEADPACT_BUS_URL": "memory://",
            "LEADPACT_LOG_LEVEL": "WARNING",
            "LEADPACT_INTAKE_CUSTOMER_CHECK": "false",
        }
        with server("intake", env) as intake, server("echo", {}) as echo:
            for target in (intake, echo):  # warm-up: connections, caches, prepared statements
                load(target.url, opts.connections, 1.0, 2_000)
            # Alternated, so that both see the same share of whatever else the machine runs.
            for n in range(opts.rounds):
                for target in (intake, echo) if n % 2 == 0 else (echo, intake):
                    run = measure(target, opts.connections, opts.seconds)
                    runs[target.kind].append(run)
                    print(f"{target.kind:6s} round {n + 1}: {run}", flush=True)
    rates = {kind: median_of(kind_runs, "rate") for kind, kind_runs in runs.items()}
    ratio = rates["intake"] / rates["echo"] if rates["echo"] else 0.0
    load_after = os.getloadavg()
    cpu = {kind: median_of(kind_runs, "server_cpu_percent") for kind, kind_runs in runs.items()}
    client = {kind: median_of(kind_runs, "client_cpu_percent") for kind, kind_runs in runs.items()}
    per_request = {
        kind: median_of(kind_runs, "server_cpu_us_per_request") for kind, kind_runs in runs.items()
    }
    print(f"intake (PostgreSQL, durable): {rates['intake']:.1f} leads/s (median)")
    print(f"echo (bare FastAPI):          {rates['echo']:.1f} req/s (median)")
    print(f"ratio intake/echo: {ratio:.2f}")
    print(
        f"server CPU: intake {cpu['intake']:.0f} % ({per_request['intake']:.0f} us/lead), "
        f"echo {cpu['echo']:.0f} % ({per_request['echo']:.0f} us/request); client CPU: "
        f"{client['intake']:.0f} % / {client['echo']:.0f} %; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    record(
        "intake",
        {
            "intake_leads_per_second": Figure(rates["intake"], "leads/s", "higher", ">= 1000"),
            "echo_requests_per_second": Figure(rates["echo"], "req/s", "higher"),
            "intake_to_echo_ratio": Figure(round(ratio, 3), "ratio", "higher", ">= 0.5"),
            "intake_p99_ms": Figure(median_of(runs["intake"], "p99_ms"), "ms", "lower"),
            "intake_server_cpu_us_per_lead": Figure(per_request["intake"], "us", "lower"),
            "echo_server_cpu_us_per_request": Figure(per_request["echo"], "us", "lower"),
        },
        notes=f"medians of {opts.rounds} alternated runs of {opts.seconds}s, "
        f"{opts.connections} connections, one uvicorn worker each, loopback, customer check "
        f"off; server CPU intake {cpu['intake']:.0f} % / echo {cpu['echo']:.0f} %, client "
        f"CPU {client['intake']:.0f} % / {client['echo']:.0f} %; load average "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f}; errors: intake "
        f"{[r['errors'] for r in runs['intake']]}, echo {[r['errors'] for r in runs['echo']]}",
    )


if __name__ == "__main__":
    main()
