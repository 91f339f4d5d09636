"""When a submission is the same person again rather than a new lead."""

from __future__ import annotations

from datetime import datetime, timedelta


def resubmission_since(now: datetime, window: timedelta) -> datetime:
    """Leads of the same person created at or after this time absorb a new submission."""
    return now - window
