"""The bytes intake puts in the outbox are the event contract every service decodes:
``CloudEvent.to_json`` must give exactly the JSON of the event's dict (what it gave before it
used pydantic's serializer directly), whatever a lead's free-form fields hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from leadpact.events import Consent, LeadActivity, LeadCreated, LeadSource, decode, envelope

AWKWARD: dict[str, Any] = {
    "accents": "José Müller, 東京",
    "controls": 'tab\tnewline\nquote"backslash\\nul\x00\x1f',
    "separators": "\u2028\u2029",
    "emoji": "🚀",
    "floats": [0.1, 0.30000000000000004, 1e16, 1.5e-7, -0.0, 100.0, 1e308],
    "not a number": float("nan"),
    "infinite": [float("inf"), float("-inf")],
    "ints": [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
    "nested": {"a": [None, True, False, {"b": []}], "": {}},
}

TIMES = [
    datetime(2026, 12, 6, 7, 0, tzinfo=UTC),
    datetime(2026, 12, 6, 7, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 12, 6, 7, 0, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 12, 6, 7, 0, tzinfo=timezone(timedelta(hours=-8))),
]


@pytest.mark.parametrize("at", TIMES)
def test_a_lead_created_is_the_json_of_its_dict(at: datetime) -> None:
    data = LeadCreated(
        lead_id="L1",
        email="josé@acme.example",
        first_name="Zoë",
        company_size=240,
        source=LeadSource(platform="meta", utm_campaign="winter sale"),
        consent=Consent(marketing=True, text="I agree «fully»", given_at=at),
        attributes=AWKWARD,
        customer_lead_ids=["L0"],
        created_at=at,
    )
    event = envelope(data, source="intake", time=at, contract_version="2026-11")
    assert event.to_json() == orjson.dumps(event.model_dump(mode="json"))
    assert decode(event.to_json()).to_json() == event.to_json()  # stable once decoded


@pytest.mark.parametrize("at", TIMES)
def test_a_lead_activity_is_the_json_of_its_dict(at: datetime) -> None:
    data = LeadActivity(lead_id="L1", activity="resubmitted", detail=AWKWARD, occurred_at=at)
    event = envelope(data, source="intake", time=at)
    assert event.to_json() == orjson.dumps(event.model_dump(mode="json"))
    assert decode(event.to_json()).id == event.id
