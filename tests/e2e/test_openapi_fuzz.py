"""schemathesis against every service's OpenAPI document: whatever a client sends, no 5xx.

Each service runs as its own process (``python -m <package>``) on a fresh PostgreSQL
database (stricter than SQLite: lengths, NUL bytes), with its own in-memory bus, and with
its webhook secrets configured — an unconfigured webhook answers 503 by design, which is
not what this test looks for. Operations are driven directly from the schema (schemathesis'
pytest plugin does not support pytest 9 yet); ``LEADPACT_FUZZ_EXAMPLES`` examples each
(default 15, so the whole module stays within a few minutes on 2 cores)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from tests.e2e.faults import SERVICES
from tests.fixtures.distributed import ServiceProcess, free_port
from tests.fixtures.system import TEST_CONTRACT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Secrets so that every webhook route is live; unreachable peers for outbound calls.
ENV: dict[str, dict[str, str]] = {
    "intake": {
        "LEADPACT_INTAKE_META_APP_SECRET": "s",
        "LEADPACT_INTAKE_META_VERIFY_TOKEN": "t",
        "LEADPACT_INTAKE_TYPEFORM_SECRET": "s",
        "LEADPACT_INTAKE_GOOGLE_KEY": "k",
        "LEADPACT_INTAKE_CRM_SYNC_URL": "http://127.0.0.1:9",
        "LEADPACT_INTAKE_GRAPH_BASE_URL": "http://127.0.0.1:9",
    },
    "crm-sync": {
        "LEADPACT_CRM_SYNC_STRIPE_WEBHOOK_SECRETS": '["whsec_test"]',
        "LEADPACT_CRM_SYNC_WEBHOOK_SECRETS": '["s"]',
    },
    "scoring": {},
    "sla-monitor": {},
    "feedback": {
        "LEADPACT_FEEDBACK_HUBSPOT_CLIENT_SECRET": "s",
        "LEADPACT_FEEDBACK_WEBHOOK_SECRET": "s",
    },
}


@pytest.mark.parametrize("service", SERVICES)
async def test_no_server_errors(
    service: str, pg_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LEADPACT_BUS_URL": "memory://",
        "LEADPACT_DATABASE_URL": await pg_database(service),
        "LEADPACT_CONTRACT_PATH": str(TEST_CONTRACT),
        "LEADPACT_PORT": str(port),
        "LEADPACT_LOG_LEVEL": "WARNING",
        "LEADPACT_CRM_SYNC_URL": "http://127.0.0.1:9",
        **ENV.get(service, {}),
    }
    process = ServiceProcess(service, port, env, tmp_path / f"{service}.log")
    process.start()
    try:
        await process.wait_ready()
        failures = fuzz(process.url)
    finally:
        process.stop()
    assert not failures, "\n\n".join(failures) + "\n" + process.log.read_text()[-3000:]


def fuzz(base_url: str) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("LEADPACT_FUZZ_EXAMPLES", "15")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def one(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error], timeout=10)

        try:
            one()
        # schemathesis reports its findings as a FailureGroup, a BaseExceptionGroup: catch
        # it too, or the first failing operation hides the others and the service's log.
        except (Exception, FailureGroup) as exc:  # noqa: BLE001 - collect every failure
            failures.append(f"{operation.label}: {exc}")
    return failures
