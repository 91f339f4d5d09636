"""The outbound push's retry delays."""

from __future__ import annotations

from datetime import timedelta

from crm_sync.sync import backoff


def test_the_delay_doubles_per_attempt_and_is_capped() -> None:
    delays = [backoff(n, 2.0, 600.0) for n in range(1, 12)]
    assert delays[:4] == [timedelta(seconds=s) for s in (2, 4, 8, 16)]
    assert delays[-1] == timedelta(seconds=600)
    assert backoff(0, 2.0, 600.0) == timedelta(seconds=2)
