"""Which funnel facts an event sets on its lead's row. Pure: the store writes them.

Each function returns the keyword arguments of ``store.touch_lead`` for one event, always
with the same keys for an event type (``None``: leave the fact alone; a key ending in
``__earliest`` keeps the earliest time seen). The same keys for every event of a type is
what lets a batch of them go in one statement; the one-event path and the batch path both
call these, so they cannot disagree on what an event means.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from leadpact.events import (
    LeadAccepted,
    LeadAssigned,
    LeadContacted,
    LeadCreated,
    LeadRejected,
    LeadScored,
)


class StoredLead(Protocol):
    """What a lead's row already holds that decides an MQL's facts."""

    @property
    def source(self) -> str | None: ...

    @property
    def mql_at(self) -> datetime | None: ...


def campaign_of(data: LeadCreated) -> str | None:
    """The campaign a new lead came from: the platform's, else the UTM one."""
    return data.source.campaign or data.source.utm_campaign


def created_facts(data: LeadCreated) -> dict[str, Any]:
    return {
        "created_at__earliest": data.created_at,
        "source": data.source.platform,
        "campaign": campaign_of(data),
    }


def mql_facts(
    data: LeadScored, contract_version: str | None, stored: StoredLead | None
) -> dict[str, Any]:
    """An MQL's facts given what the row held before it (``stored``, None: no row yet).
    Points and contract version are those of the first MQL; the source from scoring only
    fills a row that has none (the creation's platform wins)."""
    first = stored is None or stored.mql_at is None or stored.mql_at > data.scored_at
    return {
        "mql_at__earliest": data.scored_at,
        "points": data.points if first else None,
        "contract_version": contract_version if first else None,
        "source": None if stored is not None and stored.source else data.source,
    }


def assigned_facts(data: LeadAssigned) -> dict[str, Any]:
    return {"owner": data.owner}


def contacted_facts(data: LeadContacted) -> dict[str, Any]:
    return {"first_contact_at__earliest": data.contacted_at, "owner": data.owner}


def accepted_facts(data: LeadAccepted) -> dict[str, Any]:
    return {"sql_at__earliest": data.accepted_at, "owner": data.owner}


def rejected_facts(data: LeadRejected) -> dict[str, Any]:
    """The rejection reported last is the lead's (its time is not kept earliest)."""
    return {"rejected_at": data.rejected_at, "reject_reason": data.reason, "owner": data.owner}
