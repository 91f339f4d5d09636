"""The Stripe signature scheme: HMAC-SHA256 of "t.body", several v1, a replay window."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_sync.signatures import SignatureError, sign, signature_header, verify

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
BODY = b'{"id": "evt_1"}'


def test_a_known_vector_matches_the_published_scheme() -> None:
    # printf '1000.body' | openssl dgst -sha256 -hmac secret
    assert sign("secret", 1000, b"body") == (
        "b758bf26aabb35e5311bc10fd17ab6ad0881e9717e7d5fa7e233f3cea6868b45"
    )


def test_a_good_signature_passes_and_returns_its_timestamp() -> None:
    assert verify("Stripe-Signature", signature_header("s", T, BODY), BODY, ["s"], NOW, 300) == T


def test_any_of_several_secrets_and_signatures_may_match() -> None:
    header = f"t={T},v1={'0' * 64},v0=ignored,v1={sign('new', T, BODY)}"
    assert verify("Stripe-Signature", header, BODY, ["old", "new"], NOW, 300) == T


@pytest.mark.parametrize(
    ("header", "secret", "body", "malformed", "message"),
    [
        (None, "s", BODY, True, "Stripe-Signature: missing"),
        ("v1=abc", "s", BODY, True, "no t=<timestamp>"),
        (f"t={T}", "s", BODY, True, "no v1=<signature>"),
        ("t=soon,v1=ab", "s", BODY, True, "not a unix timestamp"),
        (signature_header("s", T, BODY), "other", BODY, False, "no v1 signature matches"),
        (signature_header("s", T, BODY), "s", BODY + b" ", False, "no v1 signature matches"),
        (signature_header("s", T - 301, BODY), "s", BODY, False, "replay window"),
        (signature_header("s", T + 301, BODY), "s", BODY, False, "replay window"),
    ],
)
def test_bad_signatures_are_refused_naming_the_header(
    header: str | None, secret: str, body: bytes, malformed: bool, message: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify("Stripe-Signature", header, body, [secret], NOW, 300)
    assert message in str(caught.value)
    assert str(caught.value).startswith("Stripe-Signature: ")
    assert caught.value.malformed is malformed


def test_the_window_edge_is_inside() -> None:
    assert verify("S", signature_header("s", T - 300, BODY), BODY, ["s"], NOW, 300) == T - 300
