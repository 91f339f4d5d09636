"""schemathesis against intake's OpenAPI document: whatever it sends, no 5xx.

Intake runs in a real uvicorn server (its own thread and event loop, PostgreSQL when
reachable, platform secrets configured so that no route answers 503 by design)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from sqlalchemy.engine import make_url

from intake.app import SERVICE
from leadpact.bus.memory import MemoryBus
from leadpact.service import create_app
from leadpact.settings import Settings
from tests.fixtures.postgres import BASE_URL
from tests.fixtures.system import TEST_CONTRACT

ENV = {
    "LEADPACT_INTAKE_META_APP_SECRET": "s",
    "LEADPACT_INTAKE_META_VERIFY_TOKEN": "t",
    "LEADPACT_INTAKE_TYPEFORM_SECRET": "s",
    "LEADPACT_INTAKE_GOOGLE_KEY": "k",
    "LEADPACT_INTAKE_CRM_SYNC_URL": "http://127.0.0.1:9",
    "LEADPACT_INTAKE_GRAPH_BASE_URL": "http://127.0.0.1:9",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _admin(sql: str) -> None:
    url = make_url(BASE_URL).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def fuzz_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PostgreSQL when reachable (it is stricter than SQLite: lengths, NUL), else SQLite."""
    name = f"lp_fuzz_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError):
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'intake.db'}"
        return
    yield make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def intake_url(fuzz_database: str) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        settings_ = Settings(
            database_url=fuzz_database,
            contract_path=TEST_CONTRACT,
            log_json=False,
            log_level="WARNING",
        )
        app = create_app(SERVICE, settings_, bus=MemoryBus(partitions=1))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "intake did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_no_server_errors(intake_url: str) -> None:
    """Every operation, fuzzed from its documented schema. (schemathesis' own pytest
    integration does not work with pytest 9 yet, so operations are driven directly.)"""
    schema = schemathesis.openapi.from_url(f"{intake_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("LEADPACT_FUZZ_EXAMPLES", "25")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
