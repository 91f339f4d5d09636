"""PostgreSQL unavailable, then back: every service reaches its database through a TCP proxy
the test cuts (connections reset, new ones refused, as when the server goes down) and
restores. The machine's PostgreSQL server itself is shared by other tests and never touched.

Leads keep arriving during the outage: those answered 2xx must all come through; deadlines
fall due during the outage and are breached once it is over, each exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.e2e.faults import (
    SERVICES,
    Auditor,
    every_breach_once,
    every_lead_everywhere_once,
    post_leads,
)
from tests.fixtures.distributed import DistributedFactory
from tests.fixtures.postgres import BASE_URL
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "seconds.yaml"
OUTAGE_SECONDS = 7.0  # longer than the 5 s first-contact deadline: breaches fall due inside


async def test_postgres_unreachable_then_back_loses_and_repeats_nothing(
    distributed_factory: DistributedFactory, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    server = make_url(BASE_URL)
    proxy = tcp_proxy(server.host or "127.0.0.1", server.port or 5432)
    system = await distributed_factory(
        CONTRACT, only=SERVICES, database_via=dict.fromkeys(SERVICES, proxy.address)
    )
    assert proxy.connections > 0, "the services must reach PostgreSQL through the proxy"
    async with Auditor(system.bus_url, ["sla.breached"]) as auditor:
        before = await post_leads(system["intake"], 5, pause=0)
        await every_lead_everywhere_once(system, before)

        proxy.cut()
        loop = asyncio.get_running_loop()
        outage_ends = loop.time() + OUTAGE_SECONDS
        await eventually(lambda: _not_ready(system["intake"]), 15, interval=0.2)
        during = []
        while loop.time() < outage_ends:  # leads keep arriving; a 2xx is a promise
            during += await post_leads(system["intake"], 1, pause=0.2, timeout=2)
        proxy.restore()

        after = await post_leads(system["intake"], 5, pause=0)
        assert len(after) == 5, "intake must accept again once its database is back"
        leads = before + during + after
        await every_lead_everywhere_once(system, leads, timeout=90)
        await every_breach_once(system, auditor, [lead["lead_id"] for lead in leads], timeout=90)


async def _not_ready(intake: object) -> bool:
    import httpx

    assert isinstance(intake, httpx.AsyncClient)
    try:
        return (await intake.get("/readyz", timeout=3)).status_code != 200
    except httpx.HTTPError:
        return True
