"""Against real PostgreSQL: concurrent retries of one platform submission make one lead,
and concurrent requests with one Idempotency-Key get one answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from intake import store
from intake.app import SERVICE
from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.service import create_app
from leadpact.settings import Settings
from tests.fixtures.system import TEST_CONTRACT
from tests.fixtures.waiting import eventually
from tests.integration.intake.conftest import GOOGLE_KEY
from tests.integration.intake.test_platforms import GOOGLE_LEAD


@asynccontextmanager
async def intake_on(url: str, bus: MemoryBus | None = None) -> AsyncIterator[httpx.AsyncClient]:
    bus = bus or MemoryBus(partitions=3)
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


LEADS = [
    {"email": "Ana@Acme.example", "phone": "612 345 678", "company": "Acme", "first_name": " Ana"},
    {
        "email": "luis@acme.example",
        "landing_url": "https://acme.example/?utm_source=google&utm_term=crm",
        "consent": {"marketing": True, "text": "I agree."},
        "attributes": {"budget": "50k"},
        "favourite_colour": "teal",
    },
    {"phone": "+34 699 111 222", "country": "Spain", "source": {"platform": "hubspot"}},
]


async def stored(client: httpx.AsyncClient, bus: MemoryBus) -> dict[str, Any]:
    """A scenario's answers, rows and events, with generated ids and keys replaced by the
    email or phone of their lead, so two runs can be compared."""
    answers = await asyncio.gather(
        *(
            client.post("/v1/leads", json=lead, headers={"Idempotency-Key": f"k{n}"})
            for n, lead in enumerate(LEADS)
        )
    )
    again = await client.post("/v1/leads", json=LEADS[0], headers={"Idempotency-Key": "k0"})
    resubmitted = await client.post("/v1/leads", json={"email": "ana@acme.example", "title": "CEO"})
    google = await client.post(
        "/v1/platforms/google-ads/leads", json={**GOOGLE_LEAD, "is_test": True}
    )
    ctx = client._transport.app.state.ctx  # type: ignore[attr-defined]
    async with ctx.db.session() as session:
        leads, raws, keys = [
            [dict(r._mapping) for r in await session.execute(select(model.__table__))]
            for model in (store.LeadRow, store.RawSubmission, store.IdempotencyKey)
        ]
    who = {row["id"]: row["email"] or row["phone"] for row in leads}
    await eventually(lambda: len(bus.messages("lead.activity")) == 1)
    events = [
        (m.topic, who.get(m.key), orjson.loads(m.value)["data"])
        for topic in ("lead.created", "lead.activity")
        for m in await eventually(lambda t=topic: bus.messages(t))  # type: ignore[misc]
    ]

    def plain(value: Any) -> Any:
        if isinstance(value, str) and value in who:
            return who[value]
        if isinstance(value, str) and value.startswith("raw:"):
            return "raw:*"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in ("id", "raw_id", "lead_id")}
        if isinstance(value, bytes):
            return value.decode()
        return value

    return {
        "answers": sorted(
            (a.status_code, who.get(a.json().get("lead_id")), a.json().get("status"))
            for a in [*answers, again, resubmitted, google]
        ),
        "leads": sorted((plain(row) for row in leads), key=repr),
        "raws": sorted(((plain(r), who.get(r["lead_id"])) for r in raws), key=repr),
        "keys": sorted((k["key"], who[k["lead_id"]], plain(k["response"])) for k in keys),
        "events": sorted(((t, k, plain(data)) for t, k, data in events), key=repr),
    }


async def test_postgresql_stores_exactly_what_sqlite_stores(
    pg_database: Callable[[str], Awaitable[str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """PostgreSQL writes a transaction as one statement on a held autocommit connection;
    SQLite as one INSERT per table: the same submissions must leave the same rows, answers
    and events."""
    monkeypatch.setenv("LEADPACT_INTAKE_GOOGLE_KEY", GOOGLE_KEY)
    monkeypatch.setenv("LEADPACT_INTAKE_CUSTOMER_CHECK", "false")
    runs = []
    for url in (f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", await pg_database("intake")):
        bus = MemoryBus(partitions=3)
        async with intake_on(url, bus) as client:
            runs.append(await stored(client, bus))
    sqlite, postgresql = runs
    assert len(sqlite["leads"]) == 4 and len(sqlite["events"]) == 4
    assert postgresql == sqlite
