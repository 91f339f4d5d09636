"""Webhook signatures (HubSpot v3, generic HMAC) and the status mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedback.domain.webhooks import (
    GENERIC_SIGNATURE,
    GENERIC_TIMESTAMP,
    HUBSPOT_SIGNATURE,
    HUBSPOT_TIMESTAMP,
    Mapped,
    SignatureError,
    StatusMapError,
    activity_from,
    generic_signature,
    hubspot_v3_signature,
    load_status_map,
    read_hubspot_event,
    verify_generic,
    verify_hubspot,
)
from feedback.settings import DEFAULT_STATUS_MAP

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = "https://feedback.example.com/v1/webhooks/hubspot"
BODY = b'[{"eventId":1,"subscriptionType":"contact.propertyChange","objectId":123}]'


def ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def signed(body: bytes = BODY, at: datetime = NOW, secret: str = SECRET) -> dict[str, str | None]:
    ts = ms(at)
    return {
        HUBSPOT_SIGNATURE: hubspot_v3_signature(secret, "POST", URI, body, ts),
        HUBSPOT_TIMESTAMP: ts,
    }


def test_v3_signature_is_base64_hmac_of_method_uri_body_timestamp() -> None:
    ts = ms(NOW)
    by_hand = base64.b64encode(
        hmac.new(
            SECRET.encode(), b"POST" + URI.encode() + BODY + ts.encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert hubspot_v3_signature(SECRET, "POST", URI, BODY, ts) == by_hand
    # HubSpot signs the URI with some escapes decoded
    assert hubspot_v3_signature(SECRET, "POST", URI + "?a=b%3Ac", BODY, ts) == (
        hubspot_v3_signature(SECRET, "POST", URI + "?a=b:c", BODY, ts)
    )


def test_good_hubspot_request_passes() -> None:
    verify_hubspot(SECRET, "POST", URI, BODY, signed(), NOW + timedelta(seconds=30))


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason", "header"),
    [
        (signed(secret="wrong"), BODY, NOW, "bad_signature", HUBSPOT_SIGNATURE),
        (signed(), BODY.replace(b"123", b"124"), NOW, "bad_signature", HUBSPOT_SIGNATURE),
        (signed(), BODY, NOW + timedelta(minutes=5, seconds=1), "stale", HUBSPOT_TIMESTAMP),
        (signed(at=NOW + timedelta(minutes=6)), BODY, NOW, "stale", HUBSPOT_TIMESTAMP),
        (
            {HUBSPOT_SIGNATURE: None, HUBSPOT_TIMESTAMP: ms(NOW)},
            BODY,
            NOW,
            "unsigned",
            HUBSPOT_SIGNATURE,
        ),
        ({**signed(), HUBSPOT_TIMESTAMP: None}, BODY, NOW, "unsigned", HUBSPOT_TIMESTAMP),
        ({**signed(), HUBSPOT_TIMESTAMP: "soon"}, BODY, NOW, "bad_timestamp", HUBSPOT_TIMESTAMP),
    ],
)
def test_bad_hubspot_requests_are_refused(
    headers: dict[str, str | None], body: bytes, now: datetime, reason: str, header: str
) -> None:
    with pytest.raises(SignatureError) as err:
        verify_hubspot(SECRET, "POST", URI, body, headers, now)
    assert err.value.reason == reason
    assert err.value.header == header


def test_generic_signature() -> None:
    ts = str(int(NOW.timestamp()))
    headers: dict[str, str | None] = {
        GENERIC_SIGNATURE: generic_signature("s3cret", ts, b"{}"),
        GENERIC_TIMESTAMP: ts,
    }
    verify_generic("s3cret", b"{}", headers, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_generic("other", b"{}", headers, NOW)
    with pytest.raises(SignatureError, match="older than 300 s"):
        verify_generic("s3cret", b"{}", headers, NOW + timedelta(minutes=10))


def test_default_status_map_and_hubspot_events() -> None:
    status_map = load_status_map(DEFAULT_STATUS_MAP)
    action, args = read_hubspot_event(
        {
            "subscriptionType": "contact.propertyChange",
            "propertyName": "hs_lead_status",
            "propertyValue": "CONNECTED",
        },
        status_map,
    )
    assert action == "activity" and args["mapped"].channel == "phone"
    assert (
        read_hubspot_event(
            {
                "subscriptionType": "deal.propertyChange",
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
            },
            status_map,
        )[1]["mapped"].type
        == "won"
    )
    assert read_hubspot_event(
        {
            "subscriptionType": "contact.propertyChange",
            "propertyName": "leadpact_lead_id",
            "propertyValue": "L1",
        },
        status_map,
    ) == ("link", {"lead_id": "L1"})
    assert read_hubspot_event({"subscriptionType": "call.creation"}, status_map)[0] == "activity"
    assert read_hubspot_event({"subscriptionType": "contact.deletion"}, status_map)[0] == "ignore"


def test_activity_from_mapping_keeps_only_fields_of_its_type() -> None:
    doc = activity_from(
        Mapped(type="rejected", reason="no_authority"), "L1", channel="phone", note="n", owner="x"
    )
    assert doc == {
        "type": "rejected",
        "lead_id": "L1",
        "reason": "no_authority",
        "note": "n",
        "owner": "x",
    }


def test_a_bad_status_map_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("generic:\n  Done: {type: finished}\n")
    with pytest.raises(StatusMapError, match=r"generic\.Done\.type"):
        load_status_map(path)
