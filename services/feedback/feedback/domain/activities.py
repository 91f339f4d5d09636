"""What sales reports, and the contract's rules on it: reason codes, free text for reasons
that need it, and the attempts owed before a lead may be given up as unresponsive."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from leadpact.contract import Attempts, Contract
from leadpact.events import (
    Channel,
    DealClosed,
    EventData,
    LeadAccepted,
    LeadContacted,
    LeadRejected,
    Outcome,
)

NO_RESPONSE = "no_response"

LeadId = Annotated[str, Field(min_length=1, max_length=64, description="leadpact lead id")]
Owner = Annotated[str | None, Field(None, max_length=200, description="sales rep")]
At = Annotated[
    AwareDatetime | None,
    Field(None, description="when it happened, with a UTC offset (default: now)"),
]


def refuse_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: refuse it at the door with the field named (422),
    not later as a database error (500)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL character not allowed")
    return value


class _Activity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lead_id: LeadId
    owner: Owner = None
    at: At = None

    _no_nul = field_validator("*")(refuse_nul)


class Contacted(_Activity):
    type: Literal["contacted"]
    channel: Channel
    outcome: Outcome


class Accepted(_Activity):
    type: Literal["accepted"]


class Rejected(_Activity):
    type: Literal["rejected"]
    reason: str | None = Field(
        None, max_length=64, description="one of the contract's rejection reason codes"
    )
    note: str | None = Field(None, max_length=2000, description="free text; needed by `other`")


class Won(_Activity):
    type: Literal["won"]
    amount: Decimal = Field(ge=0, max_digits=14, decimal_places=2)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")


class Lost(_Activity):
    type: Literal["lost"]
    amount: Decimal = Field(Decimal("0"), ge=0, max_digits=14, decimal_places=2)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")


Activity = Annotated[Contacted | Accepted | Rejected | Won | Lost, Field(discriminator="type")]


@dataclass(frozen=True)
class Problem:
    """Why an activity is refused: the HTTP status, the field and the message."""

    status: int
    field: str
    message: str
    extra: dict[str, Any]


def reason_catalogue(contract: Contract) -> list[dict[str, Any]]:
    """The contract's rejection reasons with their English and Spanish labels."""
    return [
        {
            "code": r.code,
            "label": {"en": r.label.get("en", r.code), "es": r.label.get("es", r.code)},
            "needs_text": r.needs_text or r.code == "other",
        }
        for r in contract.rejection_reasons
    ]


def check_reason(contract: Contract, reason: str | None, note: str | None) -> Problem | None:
    """A rejection must carry one of the contract's codes; ``other`` (or any code marked
    ``needs_text``) must carry a note."""
    valid = reason_catalogue(contract)
    listing = ", ".join(f"{r['code']} ({r['label']['en']} / {r['label']['es']})" for r in valid)
    extra = {"valid_reasons": valid, "contract_version": contract.version}
    if not reason:
        return Problem(422, "reason", f"reason: required; one of {listing}", extra)
    found = next((r for r in valid if r["code"] == reason), None)
    if found is None:
        return Problem(
            422, "reason", f"reason: {reason!r} is not a contract reason; one of {listing}", extra
        )
    if found["needs_text"] and not (note and note.strip()):
        return Problem(422, "note", f"note: reason {reason!r} needs a free-text note", extra)
    return None


@dataclass(frozen=True)
class Owed:
    """Attempts and distinct channels still missing before the attempts clause is met."""

    attempts: int
    channels: int
    made: int
    channels_used: int
    window_ends_at: datetime | None

    @property
    def met(self) -> bool:
        return self.attempts == 0 and self.channels == 0


def attempts_owed(
    rule: Attempts, started_at: datetime | None, ledger: Iterable[tuple[str, datetime]]
) -> Owed:
    """What the ledger still lacks: attempts count inside ``[started_at, started_at +
    within]``. Without an MQL time the window starts at the first attempt."""
    attempts = sorted(ledger, key=lambda a: a[1])
    start = started_at or (attempts[0][1] if attempts else None)
    end = start + rule.within if start is not None else None
    counted = [
        ch for ch, at in attempts if start is not None and end is not None and start <= at <= end
    ]
    used = len(set(counted))
    return Owed(
        attempts=max(0, rule.min_attempts - len(counted)),
        channels=max(0, rule.min_channels - used),
        made=len(counted),
        channels_used=used,
        window_ends_at=end,
    )


def no_response_problem(rule: Attempts | None, owed: Owed, now: datetime) -> Problem | None:
    """``no_response`` is refused (409) until the attempts clause is met."""
    if rule is None or owed.met:
        return None
    within = _days(rule.within.total_seconds())
    closed = owed.window_ends_at is not None and now > owed.window_ends_at
    tail = (
        " The window has closed, so the clause can no longer be met: reject with another reason."
        if closed
        else ""
    )
    message = (
        f"reason: no_response needs the attempts clause met first: {owed.attempts} more "
        f"attempt(s) and {owed.channels} more channel(s) owed ({rule.min_attempts} attempts "
        f"over {rule.min_channels} channels within {within}; {owed.made} made over "
        f"{owed.channels_used} channel(s)).{tail}"
    )
    extra = {
        "owed": {"attempts": owed.attempts, "channels": owed.channels},
        "made": {"attempts": owed.made, "channels": owed.channels_used},
        "window_ends_at": owed.window_ends_at.isoformat() if owed.window_ends_at else None,
    }
    return Problem(409, "reason", message, extra)


def _days(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds)}s"


def to_event(activity: Contacted | Accepted | Rejected | Won | Lost, at: datetime) -> EventData:
    """The event an activity becomes (the rejection reason is checked before)."""
    if isinstance(activity, Contacted):
        return LeadContacted(
            lead_id=activity.lead_id,
            channel=activity.channel,
            outcome=activity.outcome,
            owner=activity.owner,
            contacted_at=at,
        )
    if isinstance(activity, Accepted):
        return LeadAccepted(lead_id=activity.lead_id, owner=activity.owner, accepted_at=at)
    if isinstance(activity, Rejected):
        assert activity.reason is not None
        return LeadRejected(
            lead_id=activity.lead_id,
            reason=activity.reason,
            note=activity.note,
            owner=activity.owner,
            rejected_at=at,
        )
    return DealClosed(
        lead_id=activity.lead_id,
        won=isinstance(activity, Won),
        amount=activity.amount,
        currency=activity.currency,
        owner=activity.owner,
        closed_at=at,
    )
