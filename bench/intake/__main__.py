"""Durable leads per second through ``POST /v1/leads`` on PostgreSQL, against a bare FastAPI
echo endpoint with the same server settings, in one run on this machine.

    python -m bench.intake [--seconds 10] [--connections 32]

Each server runs in its own process (uvicorn, one worker, loopback); the load client is a
third process. Intake uses a fresh PostgreSQL database (LEADPACT_TEST_DATABASE_URL's server)
and the memory bus; a 202 means the lead and its event are committed. The customer check is
off (crm-sync is not part of this measurement). Prints the figures and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
def server(kind: str, env: dict[str, str]) -> Iterator[str]:
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
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


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


def measure(url: str, connections: int, seconds: float) -> dict[str, Any]:
    load(url, connections, 1.0, 2_000)  # warm-up: connections, caches, JIT-less but fair
    return load(url, connections, seconds, 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    with database() as url:
        env = {
            "LEADPACT_DATABASE_URL": url,
            "LEADPACT_BUS_URL": "memory://",
            "LEADPACT_LOG_LEVEL": "WARNING",
            "LEADPACT_INTAKE_CUSTOMER_CHECK": "false",
        }
        with server("intake", env) as intake_url:
            intake = measure(intake_url, opts.connections, opts.seconds)
    with server("echo", {}) as echo_url:
        echo = measure(echo_url, opts.connections, opts.seconds)
    ratio = float(intake["rate"]) / float(echo["rate"]) if echo["rate"] else 0.0
    print(f"intake (PostgreSQL, durable): {intake}")
    print(f"echo (bare FastAPI):          {echo}")
    print(f"ratio intake/echo: {ratio:.2f}")
    record(
        "intake",
        {
            "intake_leads_per_second": Figure(
                float(intake["rate"]), "leads/s", "higher", ">= 1000"
            ),
            "echo_requests_per_second": Figure(float(echo["rate"]), "req/s", "higher"),
            "intake_to_echo_ratio": Figure(round(ratio, 3), "ratio", "higher", ">= 0.5"),
            "intake_p99_ms": Figure(float(intake["p99_ms"]), "ms", "lower"),
        },
        notes=f"{opts.connections} connections, {opts.seconds}s each, one uvicorn worker, "
        "loopback, customer check off; errors: "
        f"intake {intake['errors']}, echo {echo['errors']}",
    )


if __name__ == "__main__":
    main()
