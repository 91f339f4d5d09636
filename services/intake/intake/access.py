"""Who may post leads: API keys (hashed, scoped, one per source) and their rate limits."""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError

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


API_KEY_HEADER = "x-api-key"
API_KEY_DOC = "API key (`intake keys create`)"
MAX_HEADER_LENGTH = 200


def caller_dependency(
    ctx: ServiceContext, parts: Runtime, scope: str
) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency: the caller of a route that needs ``scope`` (see ``identify``)."""

    async def caller(
        request: Request,
        x_api_key: Annotated[
            str | None,
            Header(description=API_KEY_DOC, max_length=MAX_HEADER_LENGTH),
        ] = None,
    ) -> Caller:
        return await identify(ctx, parts, x_api_key, scope)

    return caller


async def identify(ctx: ServiceContext, parts: Runtime, api_key: str | None, scope: str) -> Caller:
    """The caller of a route that needs ``scope``, from its ``X-API-Key`` header.

    Without a key the caller is anonymous, allowed only while ``require_api_key`` is off
    (embedded and dev); a key that is sent is always checked.
    """
    if not api_key:
        if parts.settings.require_api_key:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-API-Key: required")
        return ANONYMOUS
    found = await _key(ctx, api_key)
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


def header(request: Request, name: str) -> str | None:
    """A header a route reads itself, held to the length its OpenAPI document states (422
    shaped as FastAPI's own header validation)."""
    value = request.headers.get(name)
    if value is not None and len(value) > MAX_HEADER_LENGTH:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ["header", name],
                    "msg": f"String should have at most {MAX_HEADER_LENGTH} characters",
                    "input": value,
                    "ctx": {"max_length": MAX_HEADER_LENGTH},
                }
            ]
        )
    return value


def header_parameter(name: str, title: str, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI parameter of an optional header read by ``header`` (as FastAPI writes
    ``Header(max_length=...)``)."""
    schema: dict[str, Any] = {
        "anyOf": [{"type": "string", "maxLength": MAX_HEADER_LENGTH}, {"type": "null"}],
        "title": title,
    }
    parameter: dict[str, Any] = {"name": name, "in": "header", "required": False}
    if description is not None:
        schema["description"] = description
        parameter["description"] = description
    return {**parameter, "schema": schema}


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
