"""Every signed webhook refuses a wrong secret, a timestamp outside its replay window and an
altered body with 401, and stores nothing: no row in any of the service's tables, no event
on the bus. The genuine request, signed right, is then accepted and does store something,
so "nothing stored" is not vacuous.

Only the cases no other test covers are here (the audit of issue 9):

| webhook | wrong secret | stale / ahead of the window | altered body |
|---|---|---|---|
| intake Meta | intake/test_platforms | none in Meta's scheme | here |
| intake Typeform | here (401 only: test_platforms) | none in Typeform's scheme | here |
| intake Google | intake/test_platforms | none in Google's scheme | unsigned (key in body) |
| feedback HubSpot v3 | feedback/test_webhooks | stale there; ahead here | there |
| feedback generic | feedback/test_webhooks | stale there; ahead here | here |
| crm-sync Stripe | crm_sync/test_webhooks | stale here (401 only there) | here (401 only there) |
| crm-sync crm | here (401 only there) | here | here |
| crm-sync billing | here | here | here |

Meta and Typeform sign the body without a timestamp, so they cannot have a replay window;
intake makes a replay harmless instead (the same leadgen id or response token is one lead).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from crm_sync.signatures import signature_header
from feedback.domain.webhooks import generic_signature, hubspot_v3_signature
from intake.domain.signatures import meta_signature, typeform_signature
from leadpact.events import EventData
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.integration.crm_sync.conftest import stripe_customer
from tests.integration.intake.test_platforms import META_NOTIFICATION, TYPEFORM_EVENT

SECRET = "the-right-secret"
WRONG = "not-the-secret"
WINDOW = 300  # every replay window's default, seconds

# (secret, body, unix time of signing) -> the headers the sender would send
Signer = Callable[[str, bytes, int], dict[str, str]]


@dataclass(frozen=True)
class Webhook:
    service: str
    path: str
    settings: dict[str, str]  # environment variables that set ``SECRET`` for this webhook
    body: Any  # a genuine payload, as JSON
    sign: Signer

    def altered(self) -> bytes:
        """The body with one digit changed after signing (an id, a time, an amount)."""
        return orjson.dumps(self.body).replace(b"1", b"2", 1)


def _meta(secret: str, body: bytes, _: int) -> dict[str, str]:
    return {"X-Hub-Signature-256": meta_signature(secret, body)}


def _typeform(secret: str, body: bytes, _: int) -> dict[str, str]:
    return {"Typeform-Signature": typeform_signature(secret, body)}


def _hubspot(secret: str, body: bytes, at: int) -> dict[str, str]:
    ms = str(at * 1000)
    url = "http://feedback/v1/webhooks/hubspot"  # the v3 signature covers the full URL
    return {
        "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, "POST", url, body, ms),
        "X-HubSpot-Request-Timestamp": ms,
    }


def _feedback_generic(secret: str, body: bytes, at: int) -> dict[str, str]:
    return {
        "X-Leadpact-Signature": generic_signature(secret, str(at), body),
        "X-Leadpact-Timestamp": str(at),
    }


def _stripe(secret: str, body: bytes, at: int) -> dict[str, str]:
    return {"Stripe-Signature": signature_header(secret, at, body)}


def _crm_generic(secret: str, body: bytes, at: int) -> dict[str, str]:
    return {"Webhook-Signature": signature_header(secret, at, body)}


# A HubSpot contact saying which lead it is: genuine, feedback stores the link.
HUBSPOT_LINK = [
    {
        "eventId": 1,
        "subscriptionId": 1,
        "portalId": 62515,
        "occurredAt": 1793610000000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 501,
        "propertyName": "leadpact_lead_id",
        "propertyValue": "lead-acme-1",
        "changeSource": "CRM",
    }
]
CRM_CONTACT = {
    "id": "c-1",
    "type": "customer.upserted",
    "occurred_at": "2026-11-02T09:00:00Z",
    "customer": {"external_id": "42", "email": "ana@acme.example"},
}
BILLING_CUSTOMER = {**CRM_CONTACT, "id": "b-1", "customer": {"external_id": "acct-7"}}

INTAKE = {
    "LEADPACT_INTAKE_META_APP_SECRET": SECRET,
    "LEADPACT_INTAKE_TYPEFORM_SECRET": SECRET,
    "LEADPACT_INTAKE_CRM_SYNC_URL": "http://127.0.0.1:9",
    "LEADPACT_INTAKE_GRAPH_BASE_URL": "http://127.0.0.1:9",
}
FEEDBACK = {
    "LEADPACT_FEEDBACK_HUBSPOT_CLIENT_SECRET": SECRET,
    "LEADPACT_FEEDBACK_WEBHOOK_SECRET": SECRET,
}
CRM_SYNC = {
    "LEADPACT_CRM_SYNC_STRIPE_WEBHOOK_SECRETS": f'["{SECRET}"]',
    "LEADPACT_CRM_SYNC_WEBHOOK_SECRETS": f'["{SECRET}"]',
}

WEBHOOKS = {
    "intake-meta": Webhook(
        "intake", "/v1/platforms/meta/webhook", INTAKE, META_NOTIFICATION, _meta
    ),
    "intake-typeform": Webhook(
        "intake", "/v1/platforms/typeform/webhook", INTAKE, TYPEFORM_EVENT, _typeform
    ),
    "feedback-hubspot": Webhook(
        "feedback", "/v1/webhooks/hubspot", FEEDBACK, HUBSPOT_LINK, _hubspot
    ),
    "feedback-generic": Webhook(
        "feedback",
        "/v1/webhooks/generic",
        FEEDBACK,
        {"events": [{"lead_id": "lead-acme-1", "status": "accepted"}]},
        _feedback_generic,
    ),
    "crm-sync-stripe": Webhook(
        "crm-sync", "/v1/webhooks/stripe", CRM_SYNC, stripe_customer("evt_1"), _stripe
    ),
    "crm-sync-crm": Webhook("crm-sync", "/v1/webhooks/crm", CRM_SYNC, CRM_CONTACT, _crm_generic),
    "crm-sync-billing": Webhook(
        "crm-sync", "/v1/webhooks/billing", CRM_SYNC, BILLING_CUSTOMER, _crm_generic
    ),
}

# The missing cases of the table above.
CASES = [
    ("intake-meta", "altered"),
    ("intake-typeform", "wrong_secret"),
    ("intake-typeform", "altered"),
    ("feedback-hubspot", "ahead"),
    ("feedback-generic", "ahead"),
    ("feedback-generic", "altered"),
    ("crm-sync-stripe", "stale"),
    ("crm-sync-stripe", "altered"),
    ("crm-sync-crm", "wrong_secret"),
    ("crm-sync-crm", "stale"),
    ("crm-sync-crm", "ahead"),
    ("crm-sync-crm", "altered"),
    ("crm-sync-billing", "wrong_secret"),
    ("crm-sync-billing", "stale"),
    ("crm-sync-billing", "ahead"),
    ("crm-sync-billing", "altered"),
]

TOPICS = sorted({cls.topic for cls in EventData.__subclasses__()})


def stored(system: EmbeddedSystem, database: Path) -> dict[str, int]:
    """Rows in every table of the service's database, and messages on every topic."""
    found: dict[str, int] = {}
    with sqlite3.connect(database) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            found[table] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    for topic in TOPICS:
        found[f"topic {topic}"] = len(system.bus.messages(topic))
    return found


@pytest.mark.parametrize(("webhook", "fault"), CASES, ids=[f"{w}-{f}" for w, f in CASES])
async def test_a_forged_webhook_is_401_and_stores_nothing(
    webhook: str,
    fault: str,
    system_factory: SystemFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    hook = WEBHOOKS[webhook]
    for name, value in hook.settings.items():
        monkeypatch.setenv(name, value)
    system = await system_factory(only=[hook.service])
    database = tmp_path / "var" / f"{hook.service}.db"
    now = int(system.clock.now().timestamp())
    body = orjson.dumps(hook.body)
    content_type = {"Content-Type": "application/json"}

    secret, at, sent = SECRET, now, body
    if fault == "wrong_secret":
        secret = WRONG
    elif fault == "stale":
        at = now - WINDOW - 1
    elif fault == "ahead":
        at = now + WINDOW + 1
    elif fault == "altered":
        sent = hook.altered()
        assert sent != body
    before = stored(system, database)
    forged = await system[hook.service].post(
        hook.path, content=sent, headers={**content_type, **hook.sign(secret, body, at)}
    )
    assert forged.status_code == 401, forged.text
    system.clock.advance(60)  # let any worker that was handed something act on it
    assert stored(system, database) == before

    genuine = await system[hook.service].post(
        hook.path, content=body, headers={**content_type, **hook.sign(SECRET, body, now)}
    )
    assert genuine.is_success, genuine.text
    assert stored(system, database) != before, "the genuine request stores nothing either"
