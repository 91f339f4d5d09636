"""Stripe and generic billing payloads turned into observations, invoices and offers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crm_sync.billing import (
    GenericEvent,
    PayloadError,
    looks_like_company,
    parse_generic,
    parse_stripe,
)


def event(kind: str, obj: dict[str, object]) -> dict[str, object]:
    return {"id": "evt_1", "type": kind, "created": 1_790_000_000, "data": {"object": obj}}


def test_a_business_customer_keeps_its_legal_name_apart_from_the_person() -> None:
    parsed = parse_stripe(
        event(
            "customer.updated",
            {
                "id": "cus_1",
                "name": "Acme Robotics S.L.",
                "email": "Billing@Acme.example",
                "address": {
                    "line1": "Calle Mayor 1",
                    "postal_code": "28013",
                    "city": "Madrid",
                    "country": "ES",
                },
            },
        )
    )
    assert parsed.observation is not None
    fields = parsed.observation.fields
    assert fields["legal_name"] == fields["company"] == "Acme Robotics S.L."
    assert "first_name" not in fields
    assert fields["email"] == "billing@acme.example"
    assert fields["country"] == "ES"
    assert parsed.observation.verified == {"email", "legal_name", "billing_address"}


def test_invoice_amounts_are_in_minor_units_except_zero_decimal_currencies() -> None:
    obj = {"id": "in_1", "customer": "cus_1", "currency": "jpy", "total": 5000, "amount_paid": 5000}
    invoice = parse_stripe(event("invoice.paid", obj)).invoice
    assert invoice is not None and invoice.paid == Decimal(5000) and invoice.status == "paid"
    obj = {**obj, "currency": "eur"}
    invoice = parse_stripe(event("invoice.paid", obj)).invoice
    assert invoice is not None and invoice.paid == Decimal("50")


def test_line_discounts_become_offers_and_invoice_totals_are_the_fallback() -> None:
    obj = {
        "id": "in_1",
        "customer": {"id": "cus_1"},
        "currency": "eur",
        "total": 900,
        "discounts": [{"id": "di_1", "coupon": {"id": "SPRING", "percent_off": 10.0}}],
        "lines": {
            "data": [
                {
                    "id": "il_1",
                    "discount_amounts": [
                        {"amount": 100, "discount": "di_1"},
                        {"amount": 0, "discount": "di_2"},
                    ],
                }
            ]
        },
    }
    invoice = parse_stripe(event("invoice.finalized", obj)).invoice
    assert invoice is not None and invoice.status == "open" and invoice.paid == 0
    assert [(o.line_id, o.coupon, o.amount, o.percent_off) for o in invoice.offers] == [
        ("il_1", "SPRING", Decimal(1), Decimal("10.0"))
    ]
    legacy = {
        **obj,
        "lines": {"data": []},
        "total_discount_amounts": [{"amount": 250, "discount": "di_1"}],
    }
    invoice = parse_stripe(event("invoice.finalized", legacy)).invoice
    assert invoice is not None and [(o.line_id, o.amount) for o in invoice.offers] == [
        (None, Decimal("2.5"))
    ]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "body"),
        ({"type": "customer.created", "created": 1}, "id"),
        ({"id": "e", "type": "customer.created", "created": "yesterday"}, "created"),
        ({"id": "e", "type": "customer.created", "created": 1, "data": {}}, "data.object"),
        (
            event("invoice.paid", {"id": "in_1", "customer": "c", "currency": "eur", "total": 1.5}),
            "data.object.total",
        ),
        (event("invoice.paid", {"id": "in_1", "customer": "c"}), "data.object.currency"),
        (
            event(
                "invoice.paid",
                {
                    "id": "in_1",
                    "customer": "c",
                    "currency": "eur",
                    "lines": {"data": [{"discount_amounts": [{"amount": "x"}]}]},
                },
            ),
            "data.object.lines.data.0.discount_amounts.0.amount",
        ),
    ],
)
def test_payload_errors_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_stripe(doc)
    assert str(caught.value).startswith(f"{field}:")


def test_other_event_types_are_ignored() -> None:
    assert parse_stripe({"id": "e", "type": "charge.succeeded", "created": 1}).ignored


def test_company_names_are_recognised_by_their_legal_form() -> None:
    assert looks_like_company("Acme Robotics, S.L.")
    assert looks_like_company("Initech LLC")
    assert not looks_like_company("Ana García")


def test_a_generic_paid_invoice_defaults_paid_to_its_total() -> None:
    doc = GenericEvent.model_validate(
        {
            "id": "b-1",
            "type": "invoice.paid",
            "occurred_at": "2026-11-02T10:00:00Z",
            "customer": {"external_id": "7", "tax_id": "es-b1234567-8", "verified": ["tax_id"]},
            "invoice": {
                "external_id": "1",
                "currency": "EUR",
                "total": "10",
                "issued_at": "2026-11-01T00:00:00Z",
            },
        }
    )
    parsed = parse_generic("billing", doc)
    assert parsed.invoice is not None and parsed.invoice.paid == Decimal(10)
    assert parsed.invoice.paid_at == datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert parsed.observation is not None and parsed.observation.fields == {"tax_id": "ESB12345678"}
    assert parsed.observation.verified == {"tax_id"}
