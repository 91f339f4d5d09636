"""Scoring's tables on real PostgreSQL: migrations apply, a replayed lead.created under a new
event id is stored and scored once, and the API reads the score back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import httpx
import numpy as np

from leadpact.bus.memory import MemoryBus
from leadpact.clock import ManualClock
from leadpact.events import LeadCreated, decode, envelope
from leadpact.service import create_app
from leadpact.settings import Settings
from scoring.app import SERVICE
from scoring.model.calibrated import fit
from scoring.model.schema import infer_schema
from tests.fixtures.system import TEST_CONTRACT
from tests.fixtures.waiting import eventually


async def test_replayed_lead_is_scored_once_on_postgresql(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    bus, clock = MemoryBus(partitions=3), ManualClock()
    settings = Settings(
        database_url=await pg_database("scoring"),
        contract_path=TEST_CONTRACT,
        log_json=False,
        relay_poll_seconds=0.05,
    )
    app = create_app(SERVICE, settings, clock=clock, bus=bus)
    lead = LeadCreated(
        lead_id=str(uuid.uuid4()),
        email="ana@acme.example",
        title="VP Sales",
        company_size=500,
        phone="+34600000000",
        created_at=clock.now(),
    )
    async with app.router.lifespan_context(app):
        for _ in range(2):  # the same lead twice, as two events (a producer retry)
            event = envelope(lead, source="test", time=clock.now())
            await bus.publish(event.topic, event.subject, event.to_json())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:

            async def body() -> dict[str, object] | None:
                answer = await client.get(f"/v1/scores/{lead.lead_id}")
                return answer.json() if answer.status_code == 200 else None

            async def both_handled() -> bool:
                text = (await client.get("/metrics")).text
                return 'leadpact_events_consumed_total{topic="lead.created"} 2.0' in text

            await eventually(both_handled)  # type: ignore[arg-type]
            found = await body()
            assert found is not None
            assert found["tier"] == "mql" and found["points"] == 55
            assert len(found["history"]) == 1  # type: ignore[arg-type]
            await eventually(lambda: bus.messages("lead.scored"))
            assert [decode(m.value).data.tier for m in bus.messages("lead.scored")] == ["mql"]
    await bus.stop()


async def test_registry_keeps_one_champion_on_postgresql(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    bus, clock = MemoryBus(partitions=3), ManualClock()
    settings = Settings(
        database_url=await pg_database("scoring"), contract_path=TEST_CONTRACT, log_json=False
    )
    app = create_app(SERVICE, settings, clock=clock, bus=bus)
    rng = np.random.default_rng(2)
    rows = [{"industry": str(rng.choice(["saas", "retail"]))} for _ in range(300)]
    y = np.array([int(r["industry"] == "saas" and rng.random() < 0.7) for r in rows])
    schema = infer_schema(rows, ["industry"])
    model = fit(schema, schema.encode(rows), y)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:
            for version in ("a", "b"):
                model.version = version
                body = {"manifest": model.manifest(), "booster": model.booster.model_to_string()}
                assert (await client.post("/v1/models", json=body)).status_code == 201
            # Two promotions at once still leave exactly one champion.
            answers = await asyncio.gather(
                client.post("/v1/models/a/promote"), client.post("/v1/models/b/promote")
            )
            assert sorted(a.status_code for a in answers) in ([200, 200], [200, 409])
            listed = (await client.get("/v1/models")).json()
            assert [m["status"] for m in listed].count("champion") == 1
            clock.advance(60)
            await client.post("/v1/models/a/promote")
            clock.advance(60)
            await client.post("/v1/models/b/promote")
            back = await client.post("/v1/models/rollback")
            assert back.status_code == 200 and back.json()["version"] == "a"
    await bus.stop()
