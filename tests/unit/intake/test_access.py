"""API keys and rate limits, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from intake.domain.apikeys import issue_key, key_hash, key_id_of, parse_scopes
from intake.domain.ratelimit import RateLimits, TokenBucket

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def test_a_key_carries_its_id_and_is_stored_as_a_hash() -> None:
    issued = issue_key()
    assert key_id_of(issued.secret) == issued.key_id
    assert key_hash(issued.secret) != issued.secret and len(key_hash(issued.secret)) == 64
    assert key_id_of("nope") is None and key_id_of("lpk_abc") is None


def test_scopes_are_checked() -> None:
    assert parse_scopes(["leads:write", "leads:write"]) == ["leads:write"]
    with pytest.raises(ValueError, match="unknown scopes"):
        parse_scopes(["admin"])


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.take(T0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(T0) == pytest.approx(0.5)
    assert bucket.take(T0 + timedelta(seconds=0.5)) == 0
    limits = RateLimits(rate=0, burst=0)
    assert limits.retry_after("k", T0) == 0  # switched off
