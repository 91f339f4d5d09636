"""Erasure of a person (``privacy.erased``) in feedback.

feedback's tables hold no personal field of a lead: ids, sources, campaigns, times, points,
reasons codes, amounts, sales owners (the sales reps, not the person) and CRM object ids. The
one free text that may name the person is a rejection's ``note``, which travels only in
``lead.rejected``: an erased lead's event still waiting in the outbox goes out without it.
"""

from __future__ import annotations

from typing import Any


def erased_event_data(topic: str, data: dict[str, Any]) -> dict[str, Any]:
    if topic == "lead.rejected" and data.get("note") is not None:
        return {**data, "note": None}
    return data
