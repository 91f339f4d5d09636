"""Escalation from the contract: at sla.at_risk the owner is reminded; at sla.breached the
owner and the team manager are told and, with ``reassign``, the lead goes to the next
available member with a fresh first-contact deadline while the breach stays on record
against the first owner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadpact.events import LeadContacted
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.sla_monitor.local_servers import http_server, smtp_server
from tests.integration.sla_monitor.test_notifications import (
    SERVICE,
    Channels,
    configure,
    notifications,
)
from tests.integration.sla_monitor.test_routing import (
    ROUTING_CONTRACT,
    VERSION,
    assigned_events,
    new_mql,
    owner_of,
)


async def start(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch, contract: Path
) -> AsyncIterator[Channels]:
    async with http_server() as http, smtp_server() as smtp:
        configure(monkeypatch, http, smtp.port)
        system = await system_factory(only=[SERVICE], contract=contract)
        yield Channels(system, http, smtp)


@pytest.fixture
async def channels(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Channels]:
    async for found in start(system_factory, monkeypatch, ROUTING_CONTRACT):
        yield found


@pytest.fixture
async def no_reassign(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Channels]:
    text = ROUTING_CONTRACT.read_text(encoding="utf-8").replace("reassign: true", "reassign: false")
    contract = tmp_path / "no-reassign.yaml"
    contract.write_text(text, encoding="utf-8")
    async for found in start(system_factory, monkeypatch, contract):
        yield found


def subjects_to(channels: Channels, address: str) -> list[str]:
    return [str(m["Subject"]) for m in channels.smtp.messages if m["To"] == address]


async def test_remind_then_breach_reassigns_with_a_fresh_deadline(channels: Channels) -> None:
    system = channels.system
    lead_id = await new_mql(system, probability=0.95)
    assert (await owner_of(system, lead_id))["owner"] == "lucia"
    # 80 % of the 10 minutes: lucia is reminded.
    system.clock.advance(timedelta(minutes=8))
    await eventually(
        lambda: [s for s in subjects_to(channels, "lucia@example.com") if "Reminder" in s]
    )
    # The deadline passes: breach against lucia, marta (manager) told, jonas takes over.
    system.clock.advance(timedelta(minutes=2, seconds=1))

    async def moved() -> dict[str, Any] | None:
        found = await owner_of(system, lead_id)
        return found if found["owner"] != "lucia" else None

    found: dict[str, Any] = await eventually(moved)  # type: ignore[arg-type]
    assert (found["owner"], found["reason"]) == ("jonas", "escalation")
    first_contact = [d for d in found["deadlines"] if d["clause"] == "first_contact"]
    assert [(d["round"], d["owner"], d["status"]) for d in first_contact] == [
        (0, "lucia", "breached"),
        (1, "jonas", "open"),
    ]
    assert first_contact[1]["due_at"] == "2026-11-02T09:20:01Z"  # fresh 10 minutes
    breaches = await eventually(
        lambda: [e.data for e in system.events("sla.breached") if e.subject == lead_id]
    )
    assert [(b.clause, b.owner) for b in breaches] == [("first_contact", "lucia")]
    events = await eventually(lambda: len(assigned_events(system, lead_id)) == 2)
    assert events
    last = assigned_events(system, lead_id)[-1]
    assert (last["reason"], last["previous_owner"], last["owner"]) == (
        "escalation",
        "lucia",
        "jonas",
    )
    await eventually(lambda: subjects_to(channels, "marta@example.com"))
    assert any("breached" in s for s in subjects_to(channels, "marta@example.com"))
    await eventually(lambda: subjects_to(channels, "jonas@example.com"))
    assert any("breached" in s for s in subjects_to(channels, "lucia@example.com"))
    log = (await system[SERVICE].get("/v1/breaches")).json()["breaches"]
    assert [(b["lead_id"], b["owner"]) for b in log] == [(lead_id, "lucia")]
    # jonas answers in time: the fresh deadline is met; compliance still shows the breach.
    system.clock.advance(timedelta(minutes=3))
    await system.publish(
        LeadContacted(
            lead_id=lead_id,
            channel="phone",
            outcome="connected",
            owner="jonas",
            contacted_at=system.clock.now(),
        ),
        VERSION,
    )

    async def met() -> bool:
        rows = (await owner_of(system, lead_id))["deadlines"]
        return any(d["round"] == 1 and d["status"] == "met" for d in rows)

    await eventually(met)
    compliance = await system[SERVICE].get(
        "/v1/compliance", params={"since": "2026-11-02T00:00:00Z"}
    )
    first = next(c for c in compliance.json()["clauses"] if c["clause"] == "first_contact")
    assert (first["armed"], first["met"], first["breached"]) == (1, 0, 1)
    kinds = sorted(
        {
            (r["kind"], r["recipient"])
            for r in await notifications(system, lead_id)
            if r["channel"] == "email"
        }
    )
    assert kinds == [
        ("assigned", "jonas@example.com"),
        ("assigned", "lucia@example.com"),
        ("at_risk.first_contact", "lucia@example.com"),
        ("breached.first_contact", "lucia@example.com"),
        ("breached.first_contact", "marta@example.com"),
    ]


async def test_breach_without_reassign_only_notifies(no_reassign: Channels) -> None:
    system = no_reassign.system
    lead_id = await new_mql(system, probability=0.95)
    await owner_of(system, lead_id)  # armed before the clock moves
    system.clock.advance(timedelta(minutes=11))
    await eventually(lambda: subjects_to(no_reassign, "marta@example.com"))
    found = await owner_of(system, lead_id)
    assert found["owner"] == "lucia"
    assert len([d for d in found["deadlines"] if d["clause"] == "first_contact"]) == 1
    assert len(assigned_events(system, lead_id)) == 1
