"""Is this person already a customer? Asked of crm-sync, quickly, without ever blocking
intake: when crm-sync is slow or down the answer is "unknown" and the check is retried."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from leadpact.clock import Clock

log = structlog.get_logger("intake.customers")

# People per request; crm-sync takes up to 256. A batch only grows while the previous
# request is out, so under load it is the number of leads that arrived in one round trip.
MAX_BATCH = 64

Person = tuple[str | None, str | None]  # (email, phone)


@dataclass(frozen=True)
class CustomerAnswer:
    is_customer: bool
    customer: dict[str, Any] | None

    def lead_ids(self) -> list[str]:
        """A paying customer's earlier leads: routing gives the new one to their owner."""
        found = (self.customer or {}).get("lead_ids") if self.is_customer else None
        return [str(i) for i in found] if isinstance(found, list) else []


@dataclass(frozen=True)
class _Question:
    person: Person
    answer: asyncio.Future[CustomerAnswer | None]


class CustomerDirectory:
    """Client of crm-sync's ``POST /v1/customers/lookups``.

    Lookups are coalesced: one request is out at a time, and the lookups that arrive
    meanwhile go together in the next one (a lone lookup is sent at once). One request per
    lead cost as much CPU on both sides as the rest of the check, and under load the
    requests queued behind each other until they timed out. Each caller still waits at
    most ``timeout`` for its own answer.

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
        max_batch: int = MAX_BATCH,
    ) -> None:
        # crm-sync's lookup needs a key with customers:read once it requires API keys.
        headers = {"X-API-Key": api_key} if api_key else {}
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=headers)
        self._timeout = timeout
        self._clock = clock
        self._cooldown = cooldown
        self._max_batch = max_batch
        self._quiet_until: datetime | None = None
        self._waiting: list[_Question] = []
        self._sender: asyncio.Task[None] | None = None

    async def lookup(self, email: str | None, phone: str | None) -> CustomerAnswer | None:
        """The answer, or None when crm-sync could not be asked (or not within the timeout)."""
        if self._quiet() or not (email or phone):  # crm-sync needs one of them
            return None
        question = _Question((email, phone), asyncio.get_running_loop().create_future())
        self._waiting.append(question)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_waiting())
        try:
            async with asyncio.timeout(self._timeout):
                # A timeout cancels the future: the sender then leaves this question out.
                return await question.answer
        except TimeoutError:  # one line per caller would flood the log just when busy
            log.debug("customer check timed out", waiting=len(self._waiting))
            return None

    def _quiet(self) -> bool:
        return self._quiet_until is not None and self._clock.now() < self._quiet_until

    async def _send_waiting(self) -> None:
        """Send what waits, a batch at a time, until nothing does."""
        batch: list[_Question] = []
        try:
            while self._waiting:
                # Questions whose callers gave up (their timeout) are not asked any more.
                waiting = [q for q in self._waiting if not q.answer.done()]
                batch, self._waiting = waiting[: self._max_batch], waiting[self._max_batch :]
                if not batch:
                    continue
                answers = {} if self._quiet() else await self._ask([q.person for q in batch])
                for question in batch:
                    if not question.answer.done():
                        question.answer.set_result(answers.get(question.person))
        finally:  # cancelled by close(), or a bug: nobody is left waiting for ever
            for question in [*batch, *self._waiting]:
                if not question.answer.done():
                    question.answer.set_result(None)
            self._waiting.clear()

    async def _ask(self, people: list[Person]) -> dict[Person, CustomerAnswer]:
        """crm-sync's answer for each person (nobody's after a failure, which starts the
        cooldown: the questions still waiting then get None without a request)."""
        unique = list(dict.fromkeys(people))
        body = {
            "people": [
                {k: v for k, v in zip(("email", "phone"), p, strict=True) if v} for p in unique
            ]
        }
        try:
            answer = await self._client.post("/v1/customers/lookups", json=body)
            answer.raise_for_status()
            items = answer.json()
            if not isinstance(items, list) or len(items) != len(unique):
                raise ValueError(f"{len(unique)} people asked, answer: {str(items)[:200]}")
            found = {
                person: CustomerAnswer(bool(item["is_customer"]), item.get("customer"))
                for person, item in zip(unique, items, strict=True)
            }
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("customer check failed", error=repr(exc), people=len(unique))
            self._quiet_until = self._clock.now() + self._cooldown
            return {}
        self._quiet_until = None
        return found

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._client.aclose()
