"""API keys of the management routes (scoring, sla-monitor, feedback, crm-sync): keys given
to a service by settings (``LEADPACT_API_KEYS``), each a name, the SHA-256 of the secret and
its scopes. No table: the services share no database, and a handful of operator keys is
configuration, not data. Intake keeps its own per-source keys with rate limits in its
database (``intake.access``).

Scopes are ``<area>:read|write|admin`` (``models:admin``, ``routing:write``, ...).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, HTTPException, status

from leadpact.settings import ApiKeyEntry, Settings

API_KEY_HEADER = "X-API-Key"
API_KEY_DOC = "API key with the route's scope (`leadpact keys new`)"
MAX_KEY_LENGTH = 200
PREFIX = "lpk_"


@dataclass(frozen=True)
class Caller:
    """Who called: the key's name (None when anonymous) and what it may do."""

    name: str | None
    scopes: frozenset[str] | None
    """None: every scope (anonymous while ``require_api_key`` is off)."""

    def may(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


ANONYMOUS = Caller(None, None)


def key_sha256(secret: str) -> str:
    """SHA-256 is enough: keys are 256 random bits, nothing to brute-force, and a slow
    password hash would cost every request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(name: str, scopes: list[str]) -> tuple[str, ApiKeyEntry]:
    """A fresh random key (shown once) and the entry that goes into ``LEADPACT_API_KEYS``."""
    secret = PREFIX + secrets.token_urlsafe(32)
    return secret, ApiKeyEntry(name=name, sha256=key_sha256(secret), scopes=sorted(set(scopes)))


def identify(settings: Settings, api_key: str | None, scope: str) -> Caller:
    """The caller of a route that needs ``scope``.

    No key: anonymous with every scope while ``require_api_key`` is off (``make run`` and
    the tests), 401 when it is on. A key that is sent is always checked.
    """
    if not api_key:
        if settings.require_api_key:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"{API_KEY_HEADER}: required")
        return ANONYMOUS
    digest = key_sha256(api_key)
    found: ApiKeyEntry | None = None
    # Every entry is compared (no early exit, constant-time per comparison): the answer's
    # timing says nothing about which hash prefix matched.
    for entry in settings.api_keys:
        if hmac.compare_digest(entry.sha256.lower(), digest):
            found = entry
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"{API_KEY_HEADER}: unknown key")
    if scope not in found.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{API_KEY_HEADER}: lacks scope {scope}")
    return Caller(found.name, frozenset(found.scopes))


def require_scope(settings: Settings, scope: str) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency for a route (or a router's ``dependencies=``) that needs
    ``scope``; its ``X-API-Key`` header shows in the OpenAPI document of every route."""

    async def caller(
        x_api_key: Annotated[
            str | None,
            Header(alias=API_KEY_HEADER, description=API_KEY_DOC, max_length=MAX_KEY_LENGTH),
        ] = None,
    ) -> Caller:
        return identify(settings, x_api_key, scope)

    return caller
