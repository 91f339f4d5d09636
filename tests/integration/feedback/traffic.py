"""A generated month of funnel traffic (seeded), as plain dicts the tests can recompute KPIs
from independently, and as the events that carry it."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from leadpact.events import (
    DealClosed,
    EventData,
    LeadAccepted,
    LeadContacted,
    LeadCreated,
    LeadRejected,
    LeadScored,
    LeadSource,
    SlaBreached,
)

SOURCES = ("meta", "google", "website", "typeform")
CAMPAIGNS = ("q4-demo", "black-friday", "webinar")
OWNERS = ("ana", "luis", "marta")
REASONS = ("out_of_budget", "no_authority", "competitor_chosen")
START = datetime(2026, 10, 20, tzinfo=UTC)
SPAN = timedelta(days=45)


def generate(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    leads = []
    for _ in range(count):
        created = START + SPAN * rnd.random()
        lead: dict[str, Any] = {
            "lead_id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "created_at": created,
            "source": rnd.choice(SOURCES),
            "campaign": rnd.choice(CAMPAIGNS),
            "owner": None,
            "mql_at": None,
            "first_contact_at": None,
            "sql_at": None,
            "rejected_at": None,
            "reason": None,
            "won_at": None,
            "lost_at": None,
            "amount": None,
            "breaches": set(),
        }
        leads.append(lead)
        mql = rnd.random() < 0.8
        if mql:
            lead["mql_at"] = created + timedelta(minutes=rnd.randrange(0, 120))
            if rnd.random() < 0.85:
                lead["owner"] = rnd.choice(OWNERS)
                delay = timedelta(minutes=rnd.randrange(1, 180))
                lead["first_contact_at"] = lead["mql_at"] + delay
                if delay > timedelta(minutes=60):
                    lead["breaches"].add("first_contact")
            elif rnd.random() < 0.7:
                lead["breaches"].add("first_contact")
            if rnd.random() < 0.1:
                lead["breaches"].add("outcome")
            if lead["first_contact_at"] is not None:
                if rnd.random() < 0.45:
                    lead["sql_at"] = lead["first_contact_at"] + timedelta(
                        hours=rnd.randrange(1, 120)
                    )
                elif rnd.random() < 0.6:
                    lead["rejected_at"] = lead["first_contact_at"] + timedelta(hours=2)
                    lead["reason"] = rnd.choice(REASONS)
        sales_sourced = not mql and rnd.random() < 0.3
        if lead["sql_at"] is not None or sales_sourced:
            base = lead["sql_at"] or created
            if sales_sourced or rnd.random() < 0.55:
                lead["won_at"] = base + timedelta(days=rnd.randrange(1, 30))
                lead["amount"] = Decimal(rnd.randrange(100_000, 2_000_000)) / 100
                lead["owner"] = lead["owner"] or rnd.choice(OWNERS)
            elif rnd.random() < 0.5:
                lead["lost_at"] = base + timedelta(days=rnd.randrange(1, 30))
    return leads


def events(lead: dict[str, Any]) -> list[EventData]:
    """The events that tell feedback this lead's story."""
    lead_id, owner = lead["lead_id"], lead["owner"]
    found: list[EventData] = [
        LeadCreated(
            lead_id=lead_id,
            source=LeadSource(platform=lead["source"], campaign=lead["campaign"]),
            created_at=lead["created_at"],
        )
    ]
    if lead["mql_at"]:
        found.append(LeadScored(lead_id=lead_id, points=60, tier="mql", scored_at=lead["mql_at"]))
    if lead["first_contact_at"]:
        found.append(
            LeadContacted(
                lead_id=lead_id,
                channel="phone",
                outcome="connected",
                owner=owner,
                contacted_at=lead["first_contact_at"],
            )
        )
    for clause in sorted(lead["breaches"]):
        found.append(
            SlaBreached(
                lead_id=lead_id,
                clause=clause,
                deadline=lead["mql_at"],
                late_seconds=1.0,
                detected_at=lead["mql_at"] + timedelta(hours=1),
            )
        )
    if lead["sql_at"]:
        found.append(LeadAccepted(lead_id=lead_id, owner=owner, accepted_at=lead["sql_at"]))
    if lead["rejected_at"]:
        found.append(
            LeadRejected(
                lead_id=lead_id, reason=lead["reason"], owner=owner, rejected_at=lead["rejected_at"]
            )
        )
    if lead["won_at"] or lead["lost_at"]:
        found.append(
            DealClosed(
                lead_id=lead_id,
                won=bool(lead["won_at"]),
                amount=lead["amount"] or Decimal(0),
                owner=owner,
                closed_at=lead["won_at"] or lead["lost_at"],
            )
        )
    return found


def spend_rows(seed: int = 11) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for day in range(40):
        for source in SOURCES[:2]:
            for campaign in CAMPAIGNS:
                if rnd.random() < 0.7:
                    rows.append(
                        {
                            "day": (START + timedelta(days=day)).date().isoformat(),
                            "source": source,
                            "campaign": campaign,
                            "amount": f"{rnd.randrange(1000, 50000) / 100:.2f}",
                            "currency": "EUR",
                        }
                    )
    return rows
