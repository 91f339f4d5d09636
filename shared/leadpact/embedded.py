"""The embedded mode: all five services in one process, one in-memory bus, SQLite files.

Services are found through the ``leadpact.services`` entry point group, so this library
does not import any service by name.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from fastapi import FastAPI

from leadpact.bus.memory import MemoryBus
from leadpact.clock import Clock, SystemClock
from leadpact.logging import configure_logging
from leadpact.service import ServiceDefinition, create_app, serve_all
from leadpact.settings import Settings

SERVICE_ORDER = ("intake", "scoring", "sla-monitor", "feedback", "crm-sync")


def load_services() -> dict[str, ServiceDefinition]:
    found = {ep.name: ep.load() for ep in entry_points(group="leadpact.services")}
    return {name: found[name] for name in sorted(found, key=_order)}


def _order(name: str) -> int:
    return SERVICE_ORDER.index(name) if name in SERVICE_ORDER else len(SERVICE_ORDER)


def embedded_apps(
    var_dir: Path,
    *,
    base: Settings | None = None,
    clock: Clock | None = None,
    bus: MemoryBus | None = None,
    ports: dict[str, int] | None = None,
    only: list[str] | None = None,
) -> dict[str, tuple[FastAPI, int]]:
    """Build every service's app sharing one bus and one clock, each with its own SQLite
    database ``VAR_DIR/<service>.db``."""
    base = base or Settings()
    bus = bus or MemoryBus(
        partitions=base.kafka_partitions,
        retries=base.consumer_retries,
        batch_max=base.consumer_batch_max,
        retain=base.memory_bus_retain,
    )
    clock = clock or SystemClock()
    var_dir.mkdir(parents=True, exist_ok=True)
    apps: dict[str, tuple[FastAPI, int]] = {}
    for name, definition in load_services().items():
        if only is not None and name not in only:
            continue
        port = (ports or {}).get(name, definition.default_port)
        settings = base.model_copy(
            update={
                "database_url": f"sqlite+aiosqlite:///{var_dir / (name + '.db')}",
                "bus_url": "memory://",
                "port": port,
                "crm_sync_url": f"http://{base.host}:{(ports or {}).get('crm-sync', 8005)}",
            }
        )
        apps[name] = (create_app(definition, settings, clock=clock, bus=bus), port)
    return apps


async def run_embedded(var_dir: Path = Path("var"), host: str = "127.0.0.1") -> None:
    base = Settings(host=host)
    configure_logging(base.log_level, base.log_json)
    apps = embedded_apps(var_dir, base=base)
    for name, (_, port) in apps.items():
        print(f"  {name:<12} http://{host}:{port}   (docs: http://{host}:{port}/docs)", flush=True)
    print("leadpact embedded: in-memory bus, SQLite under", var_dir, "- Ctrl-C stops", flush=True)
    await serve_all({name: (app, host, port) for name, (app, port) in apps.items()})
