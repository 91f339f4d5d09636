"""Per-key rate limits: a token bucket whose time comes from the caller (the clock)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class TokenBucket:
    rate: float
    """Tokens added per second."""
    burst: int
    tokens: float = field(init=False)
    updated: datetime | None = None

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: datetime) -> float:
        """Take one token; return 0 when allowed, else the seconds until one is available
        (the ``Retry-After``)."""
        if self.updated is not None:
            elapsed = max(0.0, (now - self.updated).total_seconds())
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


class RateLimits:
    """One bucket per API key, in this process (a key's requests to one replica)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, key: str, now: datetime) -> float:
        if self.rate <= 0:
            return 0.0  # limits switched off
        bucket = self._buckets.setdefault(key, TokenBucket(self.rate, self.burst))
        return bucket.take(now)
