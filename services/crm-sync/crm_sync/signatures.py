"""Webhook signatures in the Stripe scheme: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]``
where each ``v1`` is the hex HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the endpoint's
secret, and ``t`` must lie within a replay window of now. Pure: time is passed in."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime


class SignatureError(ValueError):
    """The request is not authentic. ``malformed`` tells a broken header from a wrong one."""

    def __init__(self, header: str, message: str, *, malformed: bool = False) -> None:
        super().__init__(f"{header}: {message}")
        self.malformed = malformed


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex ``v1`` signature of ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """A complete header value, as the sender writes it."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def parse_header(header_name: str, value: str | None) -> tuple[int, list[str]]:
    """``(t, [v1, …])``; other schemes (``v0``) are ignored as Stripe does."""
    if not value:
        raise SignatureError(header_name, "missing", malformed=True)
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not item.isdigit():
                raise SignatureError(header_name, "t is not a unix timestamp", malformed=True)
            timestamp = int(item)
        elif key == "v1":
            signatures.append(item.strip())
    if timestamp is None:
        raise SignatureError(header_name, "no t=<timestamp> element", malformed=True)
    if not signatures:
        raise SignatureError(header_name, "no v1=<signature> element", malformed=True)
    return timestamp, signatures


def verify(
    header_name: str,
    value: str | None,
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance_seconds: float,
) -> int:
    """Check the header against every configured secret (rotation keeps two); returns ``t``.

    Raises :class:`SignatureError` when no ``v1`` matches or ``t`` is outside the window
    (in either direction: a clock far ahead is as suspicious as a replay)."""
    timestamp, given = parse_header(header_name, value)
    expected = [sign(secret, timestamp, body) for secret in secrets if secret]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise SignatureError(header_name, "no v1 signature matches the body and secret")
    age = now.timestamp() - timestamp
    if abs(age) > tolerance_seconds:
        raise SignatureError(
            header_name,
            f"timestamp t={timestamp} is {age:.0f}s from now, outside the "
            f"{tolerance_seconds:.0f}s replay window",
        )
    return timestamp
