"""Webhook authentication exactly as each platform signs its requests."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def meta_signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Meta: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, app secret>``."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = _hmac_sha256(secret, body).hex()
    return _same(expected, header.removeprefix("sha256=").strip().lower())


def typeform_signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Typeform: ``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>``."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = base64.b64encode(_hmac_sha256(secret, body)).decode()
    return _same(expected, header.removeprefix("sha256=").strip())


def key_matches(expected: str, given: str | None) -> bool:
    """Shared-secret comparison in constant time (Google Ads ``google_key``)."""
    return bool(expected) and given is not None and _same(expected, given)


def _same(expected: str, given: str) -> bool:
    """Constant-time equality; as bytes, because ``compare_digest`` refuses non-ASCII str
    and attackers choose what they send."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def meta_signature(secret: str, body: bytes) -> str:
    """The header value Meta would send; for tests and for ``intake replay`` tooling."""
    return "sha256=" + _hmac_sha256(secret, body).hex()


def typeform_signature(secret: str, body: bytes) -> str:
    return "sha256=" + base64.b64encode(_hmac_sha256(secret, body)).decode()
