"""The ``from``/``to`` query parameters every report route takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import HTTPException, Query

MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def end_day(self) -> date:
        return self.end.date()


def make_period(start: date, end: date) -> Period:
    if end <= start:
        raise HTTPException(422, "to: must be after from")
    if end - start > timedelta(days=MAX_DAYS):
        raise HTTPException(422, f"to: a period is at most {MAX_DAYS} days")
    return Period(datetime.combine(start, time(), UTC), datetime.combine(end, time(), UTC))


def period(
    start: Annotated[date, Query(alias="from", description="first day (UTC), inclusive")],
    end: Annotated[date, Query(alias="to", description="last day (UTC), exclusive")],
) -> Period:
    return make_period(start, end)
