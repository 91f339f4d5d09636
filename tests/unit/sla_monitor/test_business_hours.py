"""Deadline arithmetic in business time: windows, weekends, holidays, DST, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from leadpact.contract import BusinessHours
from sla_monitor.domain import add_business_time, late_seconds

MADRID = BusinessHours.model_validate(
    {
        "timezone": "Europe/Madrid",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "from": time(9, 0),
        "to": time(18, 0),
        "holidays": [date(2026, 12, 8)],
    }
)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_without_business_hours_all_time_counts() -> None:
    assert add_business_time(utc(2026, 11, 7, 23, 0), timedelta(minutes=10), None) == utc(
        2026, 11, 7, 23, 10
    )


def test_inside_the_window_is_plain_addition() -> None:
    # Tue 2026-11-03 10:00 Madrid = 09:00 UTC (CET, UTC+1)
    assert add_business_time(utc(2026, 11, 3, 9, 0), timedelta(minutes=10), MADRID) == utc(
        2026, 11, 3, 9, 10
    )


def test_before_opening_starts_at_opening() -> None:
    # Tue 06:00 Madrid → counts from 09:00 Madrid = 08:00 UTC
    assert add_business_time(utc(2026, 11, 3, 5, 0), timedelta(minutes=10), MADRID) == utc(
        2026, 11, 3, 8, 10
    )


def test_friday_evening_rolls_over_the_weekend() -> None:
    # Fri 2026-11-06 17:55 Madrid (16:55 UTC), 10 min: 5 on Friday, 5 on Monday 09:00
    assert add_business_time(utc(2026, 11, 6, 16, 55), timedelta(minutes=10), MADRID) == utc(
        2026, 11, 9, 8, 5
    )


def test_holiday_is_skipped() -> None:
    # Mon 2026-12-07 after hours; Tue 12-08 is a holiday → Wed 12-09 09:30 Madrid
    assert add_business_time(utc(2026, 12, 7, 20, 0), timedelta(minutes=30), MADRID) == utc(
        2026, 12, 9, 8, 30
    )


def test_durations_longer_than_a_day_span_several_windows() -> None:
    # 9 h window a day; 20 h from Mon 09:00 Madrid → Wed 11:00 Madrid
    assert add_business_time(utc(2026, 11, 2, 8, 0), timedelta(hours=20), MADRID) == utc(
        2026, 11, 4, 10, 0
    )


def test_daylight_saving_change_is_honoured() -> None:
    # Fri 2026-03-27 17:30 Madrid (CET, 16:30 UTC); clocks go forward on Sunday; the
    # remaining 30 min land on Mon 09:30 CEST = 07:30 UTC
    assert add_business_time(utc(2026, 3, 27, 16, 30), timedelta(hours=1), MADRID) == utc(
        2026, 3, 30, 7, 30
    )


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(datetime(2026, 11, 3, 9, 0), timedelta(minutes=1), MADRID)


def test_window_that_never_opens_fails() -> None:
    never = MADRID.model_copy(update={"days": []})
    with pytest.raises(ValueError, match="never open"):
        add_business_time(utc(2026, 11, 3, 9, 0), timedelta(minutes=1), never)


def test_late_seconds_is_never_negative() -> None:
    assert late_seconds(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1)) == 60
    assert late_seconds(utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 0)) == 0
