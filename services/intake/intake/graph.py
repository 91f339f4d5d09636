"""Meta Graph API client: fetches a lead's ``field_data`` by its ``leadgen_id``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

GRAPH_FIELDS = "id,created_time,field_data,ad_id,adset_id,campaign_id,form_id,is_organic"


class GraphUnavailable(Exception):
    """The lead could not be fetched now; the notification stays pending and is retried."""


class GraphClient:
    """Retries transport errors, 429 and 5xx with exponential backoff; gives up on the
    attempt (not on the lead) after ``retries``."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        timeout: float,
        retries: int,
        backoff: float,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout)
        self._token = access_token
        self._retries = max(1, retries)
        self._backoff = backoff

    async def lead(self, leadgen_id: str) -> dict[str, Any]:
        error = "no attempt"
        for attempt in range(self._retries):
            if attempt:
                # A short in-request pause between attempts, not business time: the
                # long wait between attempts is the worker's, on the injected clock.
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                answer = await self._client.get(
                    leadgen_id, params={"access_token": self._token, "fields": GRAPH_FIELDS}
                )
            except httpx.HTTPError as exc:
                error = repr(exc)
                continue
            if answer.status_code == 429 or answer.status_code >= 500:
                error = f"Graph API answered {answer.status_code}"
                continue
            if answer.status_code != 200:
                raise GraphUnavailable(f"Graph API answered {answer.status_code}: {answer.text}")
            try:
                body = answer.json()
            except ValueError as exc:
                raise GraphUnavailable(f"Graph API answered non-JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise GraphUnavailable("Graph API answered a non-object")
            return body
        raise GraphUnavailable(error)

    async def close(self) -> None:
        await self._client.aclose()
