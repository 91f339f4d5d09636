"""Who may post leads: API keys (hashed, scoped, one per source) and their rate limits."""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, HTTPException, Request, status

from intake import store
from intake.domain.apikeys import key_hash, key_id_of
from intake.runtime import Runtime
from leadpact.service import ServiceContext


@dataclass(frozen=True)
class Caller:
    key_id: str | None
    source: str | None
    scopes: frozenset[str]


ANONYMOUS = Caller(None, None, frozenset({"leads:write", "leads:read"}))


def caller_dependency(
    ctx: ServiceContext, parts: Runtime, scope: str
) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency: the caller of a route that needs ``scope``.

    Without a key the caller is anonymous, allowed only while ``require_api_key`` is off
    (embedded and dev); a key that is sent is always checked.
    """

    async def caller(
        request: Request,
        x_api_key: Annotated[
            str | None, Header(description="API key (`intake keys create`)", max_length=200)
        ] = None,
    ) -> Caller:
        if not x_api_key:
            if parts.settings.require_api_key:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-API-Key: required")
            return ANONYMOUS
        found = await _key(ctx, x_api_key)
        if scope not in found.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"X-API-Key: lacks scope {scope}")
        wait = parts.rate_limits.retry_after(found.key_id or "", ctx.clock.now())
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "X-API-Key: rate limit exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return found

    return caller


async def _key(ctx: ServiceContext, secret: str) -> Caller:
    key_id = key_id_of(secret)
    row = None
    if key_id is not None:
        async with ctx.db.session() as session:
            row = await store.api_key(session, key_id)
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.key_hash, key_hash(secret))
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-API-Key: unknown or revoked key")
    return Caller(row.id, row.source, frozenset(row.scopes))
