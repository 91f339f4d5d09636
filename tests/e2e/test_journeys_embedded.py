"""The journeys in the embedded mode: every service in this process, one memory bus, SQLite,
a manual clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from leadpact.events import CloudEvent
from tests.e2e import journeys
from tests.fixtures.system import EmbeddedSystem


def deployment(system: EmbeddedSystem) -> journeys.Deployment:
    async def events(topic: str) -> list[CloudEvent[Any]]:
        return system.events(topic)

    async def let_deadline_pass() -> None:
        system.clock.advance(timedelta(minutes=11))  # the fast contract allows 10 minutes

    return journeys.Deployment(lambda name: system.clients[name], events, let_deadline_pass)


async def test_mql_breach_and_timely_response(system: EmbeddedSystem) -> None:
    await journeys.journey_mql_breach_and_response(deployment(system))


async def test_a_rejection_without_a_valid_reason_is_refused(system: EmbeddedSystem) -> None:
    await journeys.journey_rejection_needs_a_reason(deployment(system))
