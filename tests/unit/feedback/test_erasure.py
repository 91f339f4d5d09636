"""An erased lead's waiting events lose their free text and keep their facts."""

from __future__ import annotations

from feedback.domain.erasure import erased_event_data


def test_a_rejection_note_goes_and_the_reason_stays() -> None:
    data = {"lead_id": "L1", "reason": "other", "note": "Ana said no", "owner": "rep-1"}
    assert erased_event_data("lead.rejected", data) == {**data, "note": None}


def test_other_events_are_unchanged() -> None:
    data = {"lead_id": "L1", "channel": "phone", "outcome": "connected", "owner": "rep-1"}
    assert erased_event_data("lead.contacted", data) == data
