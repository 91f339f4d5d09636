"""API keys: shown once, stored only as a hash, one per source, with scopes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX = "lpk_"
SCOPES = frozenset({"leads:write", "leads:read"})


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret: str
    """The full key, given to the client once; we keep only :func:`key_hash` of it."""


def issue_key() -> IssuedKey:
    key_id = secrets.token_hex(6)
    return IssuedKey(key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}")


def key_hash(secret: str) -> str:
    """SHA-256 is enough here: keys are 256 random bits, so there is nothing to brute-force
    and a slow password hash would only cost every request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The public id inside a key, to find its row before comparing hashes."""
    if not secret.startswith(PREFIX):
        return None
    key_id, sep, _ = secret.removeprefix(PREFIX).partition("_")
    return key_id if sep and key_id else None


def parse_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
    return sorted(set(scopes))
