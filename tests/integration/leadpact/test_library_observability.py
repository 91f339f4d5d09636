"""The shared library's own promises about counting: effects after commit only, consumer lag
visible on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from leadpact.clock import ManualClock
from leadpact.db import Database
from leadpact.events import LeadContacted
from leadpact.messaging import MESSAGING, UnitOfWork
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually


async def a_unit_of_work(tmp_path: Path) -> tuple[Database, UnitOfWork]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(MESSAGING.create_all)
    return db, UnitOfWork(db, ManualClock(), "test")


async def test_an_effect_after_commit_runs_once_the_transaction_commits(tmp_path: Path) -> None:
    db, uow = await a_unit_of_work(tmp_path)
    counted: list[str] = []
    async with uow:
        await uow.claim("test", "event-1")
        uow.after_commit(lambda: counted.append("event-1"))
        assert counted == []
        await uow.commit()
    assert counted == ["event-1"]
    await db.dispose()


async def test_an_effect_after_commit_never_runs_when_the_work_rolls_back(tmp_path: Path) -> None:
    db, uow = await a_unit_of_work(tmp_path)
    counted: list[str] = []
    async with uow:
        await uow.claim("test", "event-1")
        uow.after_commit(lambda: counted.append("event-1"))
    assert counted == []
    await db.dispose()


def lag_of(metrics_text: str, topic: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("leadpact_consumer_lag{") and f'topic="{topic}"' in line
    )


async def test_consumer_lag_is_exposed_and_drains(system_factory: SystemFactory) -> None:
    system = await system_factory(only=["crm-sync"])
    page = (await system["crm-sync"].get("/metrics")).text
    assert "# HELP leadpact_consumer_lag " in page
    now = datetime(2026, 11, 2, 10, tzinfo=UTC)
    for n in range(3):
        await system.publish(
            LeadContacted(
                lead_id=f"lead-{n}", channel="phone", outcome="connected", contacted_at=now
            )
        )

    async def drained() -> bool:
        page = (await system["crm-sync"].get("/metrics")).text
        return 'topic="lead.contacted"' in page and lag_of(page, "lead.contacted") == 0

    await eventually(drained, 20)


def requests_counted(page: str, route: str, method: str, status: int) -> float:
    labels = f'method="{method}",route="{route}",status="{status}"'
    for line in page.splitlines():
        if line.startswith("leadpact_http_requests_total{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_every_answered_request_is_counted_by_route_method_and_status(
    system_factory: SystemFactory,
) -> None:
    system = await system_factory(only=["crm-sync"])
    client = system["crm-sync"]
    for _ in range(3):
        await client.get("/v1/customers/lookup", params={"email": "ana@acme.example"})
    await client.get("/v1/customers/lookup")  # neither email nor phone: 422
    await client.get("/v1/conflicts", params={"field": "email\x00"})  # refused before routing

    page = (await client.get("/metrics")).text

    assert requests_counted(page, "/v1/customers/lookup", "GET", 200) == 3
    assert requests_counted(page, "/v1/customers/lookup", "GET", 422) == 1
    assert requests_counted(page, "unmatched", "GET", 422) == 1
