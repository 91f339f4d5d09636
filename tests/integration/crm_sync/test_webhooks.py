"""Billing webhooks: Stripe's signed events and the generic signed JSON webhook."""

from __future__ import annotations

from typing import Any

import orjson

from tests.fixtures.waiting import eventually
from tests.integration.crm_sync.conftest import (
    CrmFactory,
    now_ts,
    post_generic,
    post_stripe,
    stripe_customer,
    stripe_invoice,
)


async def lookup(system: Any, email: str) -> dict[str, Any]:
    answer = await system["crm-sync"].get("/v1/customers/lookup", params={"email": email})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_stripe_customer_becomes_a_golden_record(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    answer = await post_stripe(
        system,
        stripe_customer("evt_1", tax_ids={"data": [{"type": "eu_vat", "value": "ES B-1234567.8"}]}),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
    customer = (await lookup(system, "Ana.Garcia@acme.example"))["customer"]
    assert customer["legal_name"] == "Ana García"
    assert customer["first_name"] == "Ana" and customer["last_name"] == "García"
    assert customer["company"] == "Acme Robotics"
    assert customer["tax_id"] == "ESB12345678"
    assert customer["billing_address"] == "Calle Mayor 1, 28013 Madrid, ES"
    assert customer["source_records"] == ["stripe:cus_1"]
    assert customer["provenance"]["tax_id"]["rule"] == "authority:billing>crm>lead"
    updates = await eventually(lambda: system.events("customer.updated"))
    assert [e.subject for e in updates] == [customer["customer_id"]]


async def test_a_paid_invoice_makes_a_paying_customer_with_its_offers(
    crm_factory: CrmFactory,
) -> None:
    system = await crm_factory()
    assert (await post_stripe(system, stripe_customer("evt_1"))).status_code == 200
    paid = await post_stripe(system, stripe_invoice("evt_2"))
    assert paid.status_code == 200, paid.text
    found = await lookup(system, "ana.garcia@acme.example")
    assert found["is_customer"] is True
    customer = found["customer"]
    assert customer["lifetime_value"] == "900.00"
    offers = (
        await system["crm-sync"].get(f"/v1/customers/{customer['customer_id']}/offers")
    ).json()
    assert [(o["coupon"], o["amount"], o["percent_off"], o["line_id"]) for o in offers] == [
        ("WELCOME10", "100.00", "10.00", "il_1")
    ]
    assert offers[0]["description"] == "Welcome 10%"
    timeline = (
        await system["crm-sync"].get(f"/v1/customers/{customer['customer_id']}/timeline")
    ).json()
    assert [t["kind"] for t in timeline] == ["customer.created", "invoice.paid"]


async def test_a_finalized_invoice_records_offers_but_no_payment(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    answer = await post_stripe(system, stripe_invoice("evt_9", kind="invoice.finalized"))
    assert answer.status_code == 200, answer.text
    found = await lookup(system, "ana.garcia@acme.example")
    assert found["is_customer"] is False
    offers = await system["crm-sync"].get(f"/v1/customers/{answer.json()['customer_id']}/offers")
    assert len(offers.json()) == 1


async def test_replayed_events_and_invoices_count_once(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    first = await post_stripe(system, stripe_invoice("evt_2"))
    again = await post_stripe(system, stripe_invoice("evt_2"))
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    # Stripe may also send the same invoice under a new event id: it counts once.
    resent = await post_stripe(system, stripe_invoice("evt_3"))
    assert resent.json()["status"] == "accepted"
    customer = (await lookup(system, "ana.garcia@acme.example"))["customer"]
    assert customer["lifetime_value"] == "900.00"
    offers = await system["crm-sync"].get(f"/v1/customers/{customer['customer_id']}/offers")
    assert len(offers.json()) == 1
    metrics = (await system["crm-sync"].get("/metrics")).text
    assert "# HELP leadpact_crm_webhooks_total" in metrics
    assert 'leadpact_crm_webhooks_total{provider="stripe",result="duplicate"} 1.0' in metrics


async def test_a_wrong_secret_is_refused(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    answer = await post_stripe(system, stripe_customer("evt_1"), secret="whsec_other")
    assert answer.status_code == 401
    assert "Stripe-Signature" in answer.json()["detail"]
    assert (
        await system["crm-sync"].get(
            "/v1/customers/lookup", params={"email": "ana.garcia@acme.example"}
        )
    ).json()["customer"] is None


async def test_a_stale_timestamp_is_refused_and_a_fresh_one_accepted(
    crm_factory: CrmFactory,
) -> None:
    system = await crm_factory()
    signed_at = now_ts(system)
    system.clock.advance(301)
    stale = await post_stripe(system, stripe_customer("evt_1"), timestamp=signed_at)
    assert stale.status_code == 401
    assert "replay window" in stale.json()["detail"]
    ahead = await post_stripe(system, stripe_customer("evt_1"), timestamp=now_ts(system) + 400)
    assert ahead.status_code == 401
    fresh = await post_stripe(system, stripe_customer("evt_1"), timestamp=now_ts(system) - 299)
    assert fresh.status_code == 200, fresh.text


async def test_an_altered_body_is_refused(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    event = stripe_customer("evt_1")
    altered = orjson.dumps({**event, "type": "customer.updated"})
    answer = await post_stripe(system, event, body=altered)
    assert answer.status_code == 401
    assert "no v1 signature matches" in answer.json()["detail"]


async def test_malformed_requests_get_a_4xx_naming_the_field(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    client = system["crm-sync"]
    missing = await client.post("/v1/webhooks/stripe", content=b"{}")
    assert missing.status_code == 400
    assert missing.json()["detail"] == "Stripe-Signature: missing"
    no_v1 = await client.post(
        "/v1/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": f"t={now_ts(system)}"}
    )
    assert no_v1.status_code == 400 and "v1" in no_v1.json()["detail"]
    bad = stripe_invoice("evt_5")
    del bad["data"]["object"]["customer"]
    answer = await post_stripe(system, bad)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("data.object.customer: missing")
    wrong_type = stripe_invoice("evt_6", total="900")
    answer = await post_stripe(system, wrong_type)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("data.object.total:")
    ignored = await post_stripe(
        system,
        {
            "id": "evt_7",
            "type": "charge.succeeded",
            "created": now_ts(system),
            "data": {"object": {}},
        },
    )
    assert ignored.json()["status"] == "ignored"


async def test_webhooks_without_secrets_are_switched_off(crm_factory: CrmFactory) -> None:
    system = await crm_factory(stripe_webhook_secrets=[], webhook_secrets=[])
    answer = await post_stripe(system, stripe_customer("evt_1"))
    assert answer.status_code == 503
    assert "STRIPE_WEBHOOK_SECRETS" in answer.json()["detail"]
    generic = await post_generic(system, "crm", {"id": "x"})
    assert generic.status_code == 503


def crm_contact(event_id: str, **customer: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "customer.upserted",
        "occurred_at": "2026-11-02T09:00:00Z",
        "customer": {"external_id": "42", "email": "ana.garcia@acme.example", **customer},
    }


async def test_the_generic_webhook_takes_crm_contacts_and_billing_invoices(
    crm_factory: CrmFactory,
) -> None:
    system = await crm_factory()
    contact = crm_contact("c-1", title="CTO", phone="+34 612 34 56 78", first_name="Ana")
    answer = await post_generic(system, "crm", contact)
    assert answer.status_code == 200, answer.text
    invoice = {
        "id": "b-1",
        "type": "invoice.paid",
        "occurred_at": "2026-11-02T10:00:00Z",
        "customer": {
            "external_id": "acct-7",
            "email": "ana.garcia@acme.example",
            "legal_name": "Acme Robotics S.L.",
            "verified": ["email"],
        },
        "invoice": {
            "external_id": "INV-1",
            "currency": "EUR",
            "total": "450.00",
            "issued_at": "2026-11-02T10:00:00Z",
            "lines": [{"id": "1", "amount": "500", "discount": "50", "discount_code": "LOYAL"}],
        },
    }
    paid = await post_generic(system, "billing", invoice)
    assert paid.status_code == 200, paid.text
    assert paid.json()["customer_id"] == answer.json()["customer_id"]
    found = await lookup(system, "ana.garcia@acme.example")
    customer = found["customer"]
    assert found["is_customer"] and customer["lifetime_value"] == "450.00"
    assert customer["title"] == "CTO" and customer["legal_name"] == "Acme Robotics S.L."
    assert customer["source_records"] == ["billing:acct-7", "crm:42"]
    offers = (
        await system["crm-sync"].get(f"/v1/customers/{customer['customer_id']}/offers")
    ).json()
    assert [(o["coupon"], o["amount"]) for o in offers] == [("LOYAL", "50.00")]


async def test_the_generic_webhook_names_the_bad_field(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    bad = crm_contact("c-1")
    del bad["customer"]["external_id"]
    answer = await post_generic(system, "crm", bad)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("customer.external_id:")
    no_invoice = {**crm_contact("c-2"), "type": "invoice.paid"}
    answer = await post_generic(system, "billing", no_invoice)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("invoice:")
    wrong = await post_generic(system, "crm", crm_contact("c-3"), secret="nope")
    assert wrong.status_code == 401 and "Webhook-Signature" in wrong.json()["detail"]
    not_json = await system["crm-sync"].post(
        "/v1/webhooks/crm", content=b"{", headers={"Webhook-Signature": "t=1,v1=ab"}
    )
    assert not_json.status_code == 401  # the signature is checked before the body is read


async def test_every_route_is_documented(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    paths = (await system["crm-sync"].get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/webhooks/stripe",
        "/v1/webhooks/crm",
        "/v1/webhooks/billing",
        "/v1/reviews",
        "/v1/reviews/{review_id}",
        "/v1/conflicts",
        "/v1/customers/{customer_id}/offers",
        "/v1/merges/{merge_id}/undo",
        "/v1/sync",
        "/v1/subjects",
    ):
        assert path in paths, path
