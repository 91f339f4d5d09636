"""The contract's rules on sales activities: reason codes, notes, attempts owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from feedback.domain.activities import (
    Activity,
    Contacted,
    Rejected,
    Won,
    attempts_owed,
    check_reason,
    no_response_problem,
    reason_catalogue,
    to_event,
)
from leadpact.contract import Attempts, load_contract
from leadpact.events import DealClosed, LeadContacted, LeadRejected
from leadpact.settings import DEFAULT_CONTRACT

CONTRACT = load_contract(DEFAULT_CONTRACT)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULE = Attempts(min_attempts=6, min_channels=2, within=timedelta(days=10))
ACTIVITY = TypeAdapter(Activity)


def test_catalogue_has_english_and_spanish_labels() -> None:
    found = {r["code"]: r for r in reason_catalogue(CONTRACT)}
    assert found["no_authority"]["label"] == {
        "en": "No decision power",
        "es": "Sin poder de decisión",
    }
    assert found["other"]["needs_text"] is True
    assert found["out_of_budget"]["needs_text"] is False


@pytest.mark.parametrize(
    ("reason", "note", "field", "fragment"),
    [
        (None, None, "reason", "required"),
        ("meh", None, "reason", "'meh' is not a contract reason"),
        ("other", None, "note", "needs a free-text note"),
        ("other", "   ", "note", "needs a free-text note"),
    ],
)
def test_bad_reasons_are_refused_naming_the_field(
    reason: str | None, note: str | None, field: str, fragment: str
) -> None:
    problem = check_reason(CONTRACT, reason, note)
    assert problem is not None
    assert problem.status == 422
    assert problem.field == field
    assert fragment in problem.message
    if field == "reason":
        assert "out_of_budget (Out of budget / Fuera de presupuesto)" in problem.message
    assert {r["code"] for r in problem.extra["valid_reasons"]} >= {"no_authority", "other"}


def test_good_reasons_pass() -> None:
    assert check_reason(CONTRACT, "no_authority", None) is None
    assert check_reason(CONTRACT, "other", "moved to a holding company") is None


def test_attempts_owed_counts_attempts_and_channels_in_the_window() -> None:
    ledger = [("phone", T0 + timedelta(hours=h)) for h in range(3)]
    ledger.append(("phone", T0 - timedelta(days=1)))  # before the MQL: not counted
    ledger.append(("email", T0 + timedelta(days=11)))  # after the window: not counted
    owed = attempts_owed(RULE, T0, ledger)
    assert (owed.attempts, owed.channels, owed.made, owed.channels_used) == (3, 1, 3, 1)
    assert owed.window_ends_at == T0 + timedelta(days=10)
    assert not owed.met


def test_attempts_met_with_enough_attempts_over_enough_channels() -> None:
    ledger = [("phone", T0 + timedelta(hours=h)) for h in range(5)] + [("email", T0)]
    owed = attempts_owed(RULE, T0, ledger)
    assert owed.met
    assert no_response_problem(RULE, owed, T0) is None


def test_without_mql_time_the_window_starts_at_the_first_attempt() -> None:
    ledger = [("email", T0 + timedelta(days=20)), ("phone", T0 + timedelta(days=21))]
    owed = attempts_owed(RULE, None, ledger)
    assert (owed.attempts, owed.channels) == (4, 0)


def test_no_response_problem_says_what_is_owed() -> None:
    owed = attempts_owed(RULE, T0, [("phone", T0)])
    problem = no_response_problem(RULE, owed, T0 + timedelta(hours=1))
    assert problem is not None and problem.status == 409 and problem.field == "reason"
    assert "5 more attempt(s) and 1 more channel(s) owed" in problem.message
    assert "within 10d" in problem.message
    assert problem.extra["owed"] == {"attempts": 5, "channels": 1}
    late = no_response_problem(RULE, owed, T0 + timedelta(days=11))
    assert late is not None and "window has closed" in late.message


def test_activity_union_dispatches_on_type_and_names_bad_fields() -> None:
    contacted = ACTIVITY.validate_python(
        {"type": "contacted", "lead_id": "l1", "channel": "email", "outcome": "replied"}
    )
    assert isinstance(contacted, Contacted)
    with pytest.raises(ValidationError) as err:
        ACTIVITY.validate_python({"type": "contacted", "lead_id": "l1", "channel": "fax"})
    locs = {e["loc"] for e in err.value.errors()}
    assert ("contacted", "channel") in locs and ("contacted", "outcome") in locs
    with pytest.raises(ValidationError):
        ACTIVITY.validate_python({"type": "waved", "lead_id": "l1"})
    with pytest.raises(ValidationError):
        ACTIVITY.validate_python({"type": "won", "lead_id": "l1", "amount": "-1"})
    with pytest.raises(ValidationError):
        ACTIVITY.validate_python(
            {"type": "accepted", "lead_id": "l1", "at": "2026-11-02T09:00:00"}  # no offset
        )


def test_activities_become_their_events() -> None:
    contacted = to_event(
        Contacted(type="contacted", lead_id="l1", channel="phone", outcome="connected"), T0
    )
    assert isinstance(contacted, LeadContacted) and contacted.contacted_at == T0
    rejected = to_event(Rejected(type="rejected", lead_id="l1", reason="no_authority"), T0)
    assert isinstance(rejected, LeadRejected) and rejected.reason == "no_authority"
    won = to_event(Won(type="won", lead_id="l1", amount=Decimal("1200.50")), T0)
    assert isinstance(won, DealClosed) and won.won and won.amount == Decimal("1200.50")
