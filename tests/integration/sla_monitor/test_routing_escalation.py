"""Escalation rounds are capped by the contract (``escalation.max_reassignments``): after
the last reassignment a further breach leaves the lead with its owner and tells the team
manager, instead of handing the lead round and round."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.sla_monitor.test_escalation import start, subjects_to
from tests.integration.sla_monitor.test_notifications import SERVICE, Channels, notifications
from tests.integration.sla_monitor.test_routing import (
    ROUTING_CONTRACT,
    assigned_events,
    new_mql,
    owner_of,
)


@pytest.fixture
async def capped(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Channels]:
    text = ROUTING_CONTRACT.read_text(encoding="utf-8").replace(
        "reassign: true}", "reassign: true, max_reassignments: 1}"
    )
    assert "max_reassignments: 1" in text
    contract = tmp_path / "capped.yaml"
    contract.write_text(text, encoding="utf-8")
    async for found in start(system_factory, monkeypatch, contract):
        yield found


async def test_after_the_last_reassignment_the_lead_stays_and_the_manager_is_told(
    capped: Channels,
) -> None:
    system = capped.system
    lead_id = await new_mql(system, probability=0.95)
    assert (await owner_of(system, lead_id))["owner"] == "lucia"
    # First breach: the one reassignment the contract allows, lucia → jonas (round 1).
    system.clock.advance(timedelta(minutes=10, seconds=1))

    async def round_armed(n: int) -> dict[str, Any] | None:
        found = await owner_of(system, lead_id)
        rounds = {d["round"] for d in found["deadlines"] if d["clause"] == "first_contact"}
        return found if n in rounds else None

    found = await eventually(lambda: round_armed(1))
    assert (found["owner"], found["reason"]) == ("jonas", "escalation")
    # jonas misses it too. Uncapped, lucia (back in the rotation) would take it next.
    system.clock.advance(timedelta(minutes=10, seconds=1))

    async def breached_twice() -> bool:
        found = await owner_of(system, lead_id)
        return [d["status"] for d in found["deadlines"] if d["clause"] == "first_contact"] == [
            "breached",
            "breached",
        ]

    await eventually(breached_twice)
    capped_mail = await eventually(
        lambda: [s for s in subjects_to(capped, "marta@example.com") if "limit" in s]
    )
    unfolded = [s.replace("\r\n", "") for s in capped_mail]  # long Subject: folded
    assert unfolded == [f"Lead {lead_id} stays with jonas: escalation limit reached"]
    found = await owner_of(system, lead_id)
    assert found["owner"] == "jonas"
    first_contact = [d for d in found["deadlines"] if d["clause"] == "first_contact"]
    assert [(d["round"], d["owner"], d["status"]) for d in first_contact] == [
        (0, "lucia", "breached"),
        (1, "jonas", "breached"),
    ]

    async def both_assignments_published() -> bool:  # the relay publishes after commit
        return [e["owner"] for e in assigned_events(system, lead_id)] == ["lucia", "jonas"]

    await eventually(both_assignments_published)
    rows = await notifications(system, lead_id)
    assert ("escalation_capped", "marta@example.com") in {
        (r["kind"], r["recipient"]) for r in rows if r["channel"] == "email"
    }
    breaches = (await system[SERVICE].get("/v1/breaches")).json()["breaches"]
    assert [b["owner"] for b in breaches if b["lead_id"] == lead_id] == ["lucia", "jonas"]
