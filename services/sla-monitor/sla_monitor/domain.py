"""Deadline arithmetic: when a clause of the contract falls due. Pure, no I/O.

With ``business_hours`` only time inside the working window of a working day counts:
an MQL scored on Friday at 17:55 with ten minutes to answer, in a 09:00–18:00 Mon–Fri
window, is due on Monday at 09:05 local time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from leadpact.contract import Attempts, BusinessHours, Contract

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MAX_DAYS_SEARCHED = 3 * 366
"""A window that never opens (every day a holiday) must fail, not loop forever."""

TIMED_CLAUSES = ("first_contact", "outcome")
"""Clauses the watch breaches when their time runs out. The attempts clause is judged when
the lead is rejected as ``no_response``, not by the clock."""

NO_RESPONSE = "no_response"

CLAUSE_TEAM = {"first_contact": "sales", "attempts": "sales", "outcome": "sales"}
"""The team answerable for each clause: every deadline here is a promise sales made."""


def answerable_team(clause: str, owning_team: str | None) -> str:
    """The team a breach is held against: the team of the lead's owner where routing gave
    the lead one, else the team that answers for the clause."""
    return owning_team or CLAUSE_TEAM.get(clause, "sales")


@dataclass(frozen=True)
class Deadline:
    """A clause armed for a lead: due at ``due_at``, warned about at ``at_risk_at``."""

    clause: str
    due_at: datetime
    at_risk_at: datetime | None


def _working_day(day: date, hours: BusinessHours) -> bool:
    return WEEKDAYS[day.weekday()] in hours.days and day not in hours.holidays


def _window(day: date, hours: BusinessHours) -> tuple[datetime, datetime]:
    """The day's working window in UTC (converted per day, so DST shifts are honoured)."""
    tz = ZoneInfo(hours.timezone)
    opens = datetime.combine(day, hours.from_, tzinfo=tz).astimezone(UTC)
    closes = datetime.combine(day, hours.to, tzinfo=tz).astimezone(UTC)
    return opens, closes


def add_business_time(start: datetime, allowed: timedelta, hours: BusinessHours | None) -> datetime:
    """``start`` plus ``allowed`` counting only business time (all time when ``hours`` is
    None). ``start`` must be timezone-aware; the result is UTC."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start = start.astimezone(UTC)
    if hours is None:
        return start + allowed
    remaining = allowed
    cursor = start
    day = start.astimezone(ZoneInfo(hours.timezone)).date()
    for _ in range(MAX_DAYS_SEARCHED):
        if _working_day(day, hours):
            opens, closes = _window(day, hours)
            cursor = max(cursor, opens)
            if cursor < closes:
                available = closes - cursor
                if remaining <= available:
                    return cursor + remaining
                remaining -= available
        day += timedelta(days=1)
    raise ValueError(f"business_hours never open within {MAX_DAYS_SEARCHED} days")


def first_contact_deadline(contract: Contract, became_mql_at: datetime) -> Deadline:
    """The first-contact clause of ``contract`` for a lead that became an MQL then."""
    response = contract.response
    allowed = response.first_contact_within
    hours = response.business_hours
    return Deadline(
        clause="first_contact",
        due_at=add_business_time(became_mql_at, allowed, hours),
        at_risk_at=add_business_time(became_mql_at, allowed * response.at_risk_at, hours),
    )


def deadlines(contract: Contract, became_mql_at: datetime) -> list[Deadline]:
    """Every clause of ``contract`` armed for an MQL: the contract version in force when
    the lead became an MQL judges it, whatever version is current later."""
    armed = [first_contact_deadline(contract, became_mql_at)]
    start = became_mql_at.astimezone(UTC)
    if contract.attempts is not None:
        armed.append(Deadline("attempts", start + contract.attempts.within, None))
    if contract.outcome is not None:
        allowed = contract.outcome.decide_within
        warn = start + allowed * contract.response.at_risk_at
        armed.append(Deadline("outcome", start + allowed, warn))
    return armed


def attempts_satisfied(
    rule: Attempts, started_at: datetime, attempts: Iterable[tuple[str, datetime]]
) -> bool:
    """Enough contact attempts over enough channels within the clause's window."""
    window_end = started_at + rule.within
    counted = [channel for channel, at in attempts if started_at <= at <= window_end]
    return len(counted) >= rule.min_attempts and len(set(counted)) >= rule.min_channels


def late_seconds(due_at: datetime, detected_at: datetime) -> float:
    """How late a breach was noticed (never negative)."""
    return max(0.0, (detected_at - due_at).total_seconds())
