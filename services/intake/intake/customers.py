"""Is this person already a customer? Asked of crm-sync, quickly, without ever blocking
intake: when crm-sync is slow or down the answer is "unknown" and the check is retried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from leadpact.clock import Clock

log = structlog.get_logger("intake.customers")


@dataclass(frozen=True)
class CustomerAnswer:
    is_customer: bool
    customer: dict[str, Any] | None

    def lead_ids(self) -> list[str]:
        """A paying customer's earlier leads: routing gives the new one to their owner."""
        found = (self.customer or {}).get("lead_ids") if self.is_customer else None
        return [str(i) for i in found] if isinstance(found, list) else []


class CustomerDirectory:
    """Client of crm-sync's ``GET /v1/customers/lookup``.

    After a failure it stops asking for ``cooldown`` (clock time): during an outage every
    lead would otherwise wait for a timeout, and the pending checks are retried anyway.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float,
        clock: Clock,
        cooldown: timedelta,
        api_key: str = "",
    ) -> None:
        # crm-sync's lookup needs a key with customers:read once it requires API keys.
        headers = {"X-API-Key": api_key} if api_key else {}
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=headers)
        self._clock = clock
        self._cooldown = cooldown
        self._quiet_until: datetime | None = None

    async def lookup(self, email: str | None, phone: str | None) -> CustomerAnswer | None:
        """The answer, or None when crm-sync could not be asked."""
        now = self._clock.now()
        if self._quiet_until is not None and now < self._quiet_until:
            return None
        params = {k: v for k, v in (("email", email), ("phone", phone)) if v}
        try:
            answer = await self._client.get("/v1/customers/lookup", params=params)
            answer.raise_for_status()
            body = answer.json()
            result = CustomerAnswer(bool(body["is_customer"]), body.get("customer"))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("customer check failed", error=repr(exc))
            self._quiet_until = now + self._cooldown
            return None
        self._quiet_until = None
        return result

    async def close(self) -> None:
        await self._client.aclose()
