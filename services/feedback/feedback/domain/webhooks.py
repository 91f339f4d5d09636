"""CRM webhooks: how each platform signs its requests, and the configurable mapping from
CRM statuses to leadpact activities. Pure: the route reads headers and body, this judges."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

HUBSPOT_SIGNATURE = "X-HubSpot-Signature-v3"
HUBSPOT_TIMESTAMP = "X-HubSpot-Request-Timestamp"
GENERIC_SIGNATURE = "X-Leadpact-Signature"
GENERIC_TIMESTAMP = "X-Leadpact-Timestamp"

# HubSpot signs the URI with these percent-escapes decoded.
_HUBSPOT_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


class SignatureError(ValueError):
    """Why a webhook is not trusted; ``header`` names the header at fault."""

    def __init__(self, header: str, message: str, reason: str) -> None:
        super().__init__(f"{header}: {message}")
        self.header = header
        self.reason = reason


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def hubspot_uri(uri: str) -> str:
    for escaped, char in _HUBSPOT_DECODE.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def hubspot_v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(client secret, method + URI + body + timestamp))."""
    message = method.upper().encode() + hubspot_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(_hmac(secret, message)).decode()


def _fresh(header: str, raw: str | None, now: datetime, max_age: timedelta, unit: float) -> None:
    if not raw:
        raise SignatureError(header, "missing", "unsigned")
    try:
        sent = datetime.fromtimestamp(int(raw) / unit, tz=now.tzinfo)
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureError(header, f"{raw!r} is not a Unix timestamp", "bad_timestamp") from exc
    if now - sent > max_age:
        raise SignatureError(
            header, f"older than {int(max_age.total_seconds())} s: refused (replay)", "stale"
        )
    if sent - now > max_age:
        raise SignatureError(header, "in the future", "stale")


def verify_hubspot(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    headers: dict[str, str | None],
    now: datetime,
    max_age: timedelta = timedelta(minutes=5),
) -> None:
    """Raise :class:`SignatureError` unless the v3 signature matches and the timestamp (Unix
    milliseconds) is within ``max_age``."""
    signature = headers.get(HUBSPOT_SIGNATURE)
    if not signature:
        raise SignatureError(HUBSPOT_SIGNATURE, "missing", "unsigned")
    timestamp = headers.get(HUBSPOT_TIMESTAMP)
    _fresh(HUBSPOT_TIMESTAMP, timestamp, now, max_age, 1000.0)
    assert timestamp is not None
    expected = hubspot_v3_signature(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError(HUBSPOT_SIGNATURE, "does not match the request", "bad_signature")


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    return "sha256=" + _hmac(secret, timestamp.encode() + b"." + body).hex()


def verify_generic(
    secret: str,
    body: bytes,
    headers: dict[str, str | None],
    now: datetime,
    max_age: timedelta = timedelta(minutes=5),
) -> None:
    signature = headers.get(GENERIC_SIGNATURE)
    if not signature:
        raise SignatureError(GENERIC_SIGNATURE, "missing", "unsigned")
    timestamp = headers.get(GENERIC_TIMESTAMP)
    _fresh(GENERIC_TIMESTAMP, timestamp, now, max_age, 1.0)
    assert timestamp is not None
    expected = generic_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError(GENERIC_SIGNATURE, "does not match the request", "bad_signature")


# ---- the status mapping ------------------------------------------------------------------


class Mapped(BaseModel):
    """What a CRM status means in leadpact (the rest of the activity comes from the event)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["contacted", "accepted", "rejected", "won", "lost"]
    channel: str | None = None
    outcome: str | None = None
    reason: str | None = None
    note: str | None = None


class HubSpotMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    properties: dict[str, dict[str, Mapped]] = Field(default_factory=dict)
    engagements: dict[str, Mapped] = Field(default_factory=dict)
    link_property: str = "leadpact_lead_id"


class StatusMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hubspot: HubSpotMap = HubSpotMap()
    generic: dict[str, Mapped] = Field(default_factory=dict)


class StatusMapError(ValueError):
    pass


def load_status_map(path: Path) -> StatusMap:
    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise StatusMapError(f"{path}: {exc}") from exc
    try:
        return StatusMap.model_validate(doc or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StatusMapError(f"{path}: {where}: {first['msg']}") from exc


def activity_from(mapped: Mapped, lead_id: str, **given: Any) -> dict[str, Any]:
    """An activity document (for the ``Activity`` union) from a mapping and what the event
    said; what the event says wins over the mapping's defaults."""
    doc: dict[str, Any] = {"lead_id": lead_id, **mapped.model_dump(exclude_none=True)}
    doc.update({k: v for k, v in given.items() if v is not None})
    keep = {
        "contacted": {"channel", "outcome"},
        "rejected": {"reason", "note"},
        "won": {"amount", "currency"},
        "lost": {"amount", "currency"},
        "accepted": set(),
    }[doc["type"]]
    common = {"type", "lead_id", "owner", "at"}
    return {k: v for k, v in doc.items() if k in common | keep}


HubSpotAction = tuple[Literal["activity", "link", "amount", "ignore"], dict[str, Any]]


def read_hubspot_event(event: dict[str, Any], status_map: StatusMap) -> HubSpotAction:
    """What one HubSpot webhook event asks for: link an object to a lead, remember a deal
    amount, an activity (for the object's lead), or nothing."""
    kind = str(event.get("subscriptionType", ""))
    obj, _, change = kind.partition(".")
    prop = event.get("propertyName")
    value = event.get("propertyValue")
    hub = status_map.hubspot
    if change == "propertyChange" and prop == hub.link_property and value:
        return "link", {"lead_id": str(value)}
    if obj == "deal" and change == "propertyChange" and prop == "amount" and value:
        return "amount", {"amount": str(value)}
    if change == "propertyChange" and isinstance(prop, str):
        mapped = hub.properties.get(prop, {}).get(str(value))
        if mapped is not None:
            return "activity", {"mapped": mapped}
        return "ignore", {"why": f"{prop}={value!r} is not mapped"}
    if change == "creation" and obj in hub.engagements:
        return "activity", {"mapped": hub.engagements[obj]}
    return "ignore", {"why": f"subscriptionType {kind!r} is not used"}
