"""Against real PostgreSQL: concurrent retries of one platform submission make one lead,
and concurrent requests with one Idempotency-Key get one answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from intake.app import SERVICE
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.service import create_app
from leadpact.settings import Settings
from tests.fixtures.system import TEST_CONTRACT
from tests.integration.intake.conftest import GOOGLE_KEY
from tests.integration.intake.test_platforms import GOOGLE_LEAD


@asynccontextmanager
async def intake_on(url: str) -> AsyncIterator[httpx.AsyncClient]:
    bus = MemoryBus(partitions=3)
    settings = Settings(database_url=url, contract_path=TEST_CONTRACT, log_json=False)
    app = create_app(SERVICE, settings, clock=ManualClock(), bus=bus)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client
    await bus.stop()


async def test_concurrent_retries_make_one_lead_on_postgresql(
    pg_database: Callable[[str], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADPACT_INTAKE_GOOGLE_KEY", GOOGLE_KEY)
    monkeypatch.setenv("LEADPACT_INTAKE_CRM_SYNC_URL", "http://127.0.0.1:9")
    async with intake_on(await pg_database("intake")) as intake:
        google = await asyncio.gather(
            *(intake.post("/v1/platforms/google-ads/leads", json=GOOGLE_LEAD) for _ in range(8))
        )
        assert {a.status_code for a in google} == {200}
        assert len({a.json()["lead_id"] for a in google}) == 1

        lead = {"email": "pg@acme.example", "company": "Acme"}
        keyed = await asyncio.gather(
            *(
                intake.post("/v1/leads", json=lead, headers={"Idempotency-Key": "pg-1"})
                for _ in range(8)
            )
        )
        assert {a.status_code for a in keyed} == {202}, [a.text for a in keyed]
        assert len({a.json()["lead_id"] for a in keyed}) == 1
