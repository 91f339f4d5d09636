"""Billing and CRM webhook payloads turned into what the golden record needs: an
:class:`Observation` of the person, an invoice and the discounts (offers) on its lines.

Two formats: Stripe events (``customer.created``/``customer.updated``, ``invoice.finalized``/
``invoice.paid``; amounts in minor units) and leadpact's generic signed JSON
(:class:`GenericEvent`; amounts in major units). Pure: nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_sync.domain import Observation, clean, fold, observation, split_name

STRIPE_CUSTOMER_EVENTS = ("customer.created", "customer.updated")
STRIPE_INVOICE_EVENTS = ("invoice.finalized", "invoice.paid")
# Stripe amounts are in the currency's smallest unit, except these (no minor unit).
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
COMPANY_WORDS = frozenset(
    [
        "sl",
        "slu",
        "sa",
        "sas",
        "sarl",
        "srl",
        "gmbh",
        "ag",
        "bv",
        "nv",
        "ltd",
        "limited",
        "llc",
        "inc",
        "corp",
        "corporation",
        "plc",
        "co",
        "company",
        "oy",
        "ab",
        "as",
        "spa",
        "sro",
        "kft",
    ]
)
BILLING_VERIFIED = frozenset({"email", "legal_name", "tax_id", "billing_address"})


class PayloadError(ValueError):
    """The payload lacks or mistypes a field; the message starts with the field's path."""


@dataclass(frozen=True)
class OfferFact:
    line_id: str | None
    discount: str | None
    coupon: str | None
    description: str | None
    amount: Decimal
    percent_off: Decimal | None = None


@dataclass(frozen=True)
class InvoiceFact:
    ref: str
    customer_ref: str
    status: Literal["open", "paid"]
    currency: str
    total: Decimal
    paid: Decimal
    issued_at: datetime
    paid_at: datetime | None
    offers: list[OfferFact] = field(default_factory=list)


@dataclass(frozen=True)
class BillingEvent:
    """One webhook event: ``observation`` (who), ``invoice`` (what was billed), or neither
    for an event type crm-sync does not use (acknowledged and ignored)."""

    event_id: str
    type: str
    occurred_at: datetime
    observation: Observation | None = None
    invoice: InvoiceFact | None = None

    @property
    def ignored(self) -> bool:
        return self.observation is None and self.invoice is None


def looks_like_company(name: str | None) -> bool:
    words = fold(name).split()
    return bool(words) and (words[-1] in COMPANY_WORDS or "".join(words[-2:]) in COMPANY_WORDS)


# ---- Stripe -------------------------------------------------------------------------------


def _get(
    doc: Any, path: str, kind: type | tuple[type, ...], required: bool = True, at: str = ""
) -> Any:
    """``doc[a][b]…`` for ``path = "a.b"``, type-checked; errors name the path."""
    value = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        if required:
            raise PayloadError(f"{at}{path}: missing")
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise PayloadError(f"{at}{path}: expected {names}, got {type(value).__name__}")
    return value


def _unix(doc: Any, path: str, required: bool = True, at: str = "") -> datetime | None:
    value = _get(doc, path, int, required, at)
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _money(minor: Any, currency: str, path: str) -> Decimal:
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise PayloadError(f"{path}: expected an integer amount in minor units")
    amount = Decimal(minor)
    return amount if currency in ZERO_DECIMAL else amount / 100


def _address(address: Any) -> tuple[str | None, str | None]:
    """A one-line billing address and its country code."""
    if not isinstance(address, dict):
        return None, None
    city = " ".join(p for p in (clean(address.get("postal_code")), clean(address.get("city"))) if p)
    parts = [
        clean(address.get("line1")),
        clean(address.get("line2")),
        city or None,
        clean(address.get("state")),
        clean(address.get("country")),
    ]
    line = ", ".join(p for p in parts if p)
    return line or None, clean(address.get("country"))


def _tax_id(tax_ids: Any) -> str | None:
    items = tax_ids.get("data") if isinstance(tax_ids, dict) else tax_ids
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and clean(item.get("value")):
                return clean(item.get("value"))
    return None


def _person(
    ref: str,
    when: datetime,
    *,
    email: Any,
    name: Any,
    phone: Any,
    address: Any,
    tax_ids: Any,
    business_name: Any = None,
    individual_name: Any = None,
    metadata: Any = None,
) -> Observation:
    meta = metadata if isinstance(metadata, dict) else {}
    name, business, individual = clean(name), clean(business_name), clean(individual_name)
    legal = business or name
    person = individual or (None if business or looks_like_company(name) else name)
    first, last = split_name(person)
    line, country = _address(address)
    raw = {
        "email": email if isinstance(email, str) else None,
        "phone": phone if isinstance(phone, str) else None,
        "first_name": first,
        "last_name": last,
        "legal_name": legal,
        "company": clean(meta.get("company")) or business or (name if person is None else None),
        "title": clean(meta.get("title")),
        "tax_id": _tax_id(tax_ids),
        "billing_address": line,
        "country": country,
    }
    return observation("billing", ref, when, raw, verified=BILLING_VERIFIED)


def parse_stripe(doc: Any) -> BillingEvent:
    """A Stripe event object; raises :class:`PayloadError` naming the bad field."""
    if not isinstance(doc, dict):
        raise PayloadError("body: expected a JSON object (a Stripe event)")
    event_id = _get(doc, "id", str)
    kind = _get(doc, "type", str)
    created = _unix(doc, "created")
    assert created is not None
    if kind not in STRIPE_CUSTOMER_EVENTS + STRIPE_INVOICE_EVENTS:
        return BillingEvent(event_id, kind, created)
    obj = _get(doc, "data.object", dict)
    if kind in STRIPE_CUSTOMER_EVENTS:
        ref = "stripe:" + _get(obj, "id", str, at="data.object.")
        seen = (
            _unix(obj, "created", required=False, at="data.object.")
            if kind == "customer.created"
            else None
        )
        person = _person(
            ref,
            seen or created,
            email=obj.get("email"),
            name=obj.get("name"),
            phone=obj.get("phone"),
            address=obj.get("address"),
            tax_ids=obj.get("tax_ids"),
            business_name=obj.get("business_name"),
            individual_name=obj.get("individual_name"),
            metadata=obj.get("metadata"),
        )
        return BillingEvent(event_id, kind, created, observation=person)
    return _stripe_invoice(event_id, kind, created, obj)


def _stripe_invoice(
    event_id: str, kind: str, created: datetime, obj: dict[str, Any]
) -> BillingEvent:
    invoice_id = _get(obj, "id", str, at="data.object.")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if not isinstance(customer, str) or not customer:
        raise PayloadError("data.object.customer: missing (the invoice's customer id)")
    currency = _get(obj, "currency", str, at="data.object.").lower()
    total = _money(obj.get("total", 0), currency, "data.object.total")
    paid = _money(obj.get("amount_paid", 0), currency, "data.object.amount_paid")
    issued = _unix(obj, "created", required=False, at="data.object.") or created
    transitions = obj.get("status_transitions") or {}
    paid_at = (
        _unix(transitions, "paid_at", False, "data.object.status_transitions.")
        if kind == "invoice.paid"
        else None
    )
    if kind == "invoice.paid":
        paid_at = paid_at or created
    ref = "stripe:" + customer
    person = _person(
        ref,
        issued,
        email=obj.get("customer_email"),
        name=obj.get("customer_name"),
        phone=obj.get("customer_phone"),
        address=obj.get("customer_address"),
        tax_ids=obj.get("customer_tax_ids"),
    )
    invoice = InvoiceFact(
        ref="stripe:" + invoice_id,
        customer_ref=ref,
        status="paid" if kind == "invoice.paid" else "open",
        currency=currency,
        total=total,
        paid=paid if kind == "invoice.paid" else Decimal(0),
        issued_at=issued,
        paid_at=paid_at,
        offers=_stripe_offers(obj, currency),
    )
    return BillingEvent(event_id, kind, created, observation=person, invoice=invoice)


def _stripe_offers(obj: dict[str, Any], currency: str) -> list[OfferFact]:
    """One offer per discount amount on each line; the invoice's total discounts when the
    lines carry none (older API versions)."""
    known: dict[str, dict[str, Any]] = {}
    for item in obj.get("discounts") or []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            known[item["id"]] = item
    lines = _get(obj, "lines.data", list, False, "data.object.") or []
    offers: list[OfferFact] = []
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise PayloadError(f"data.object.lines.data.{i}: expected an object")
        for j, amount in enumerate(line.get("discount_amounts") or []):
            where = f"data.object.lines.data.{i}.discount_amounts.{j}"
            if not isinstance(amount, dict):
                raise PayloadError(f"{where}: expected an object")
            value = _money(amount.get("amount"), currency, f"{where}.amount")
            if value > 0:
                offers.append(_offer(line.get("id"), amount.get("discount"), value, known, line))
    if not offers:
        for j, amount in enumerate(obj.get("total_discount_amounts") or []):
            where = f"data.object.total_discount_amounts.{j}"
            if not isinstance(amount, dict):
                raise PayloadError(f"{where}: expected an object")
            value = _money(amount.get("amount"), currency, f"{where}.amount")
            if value > 0:
                offers.append(_offer(None, amount.get("discount"), value, known, {}))
    return offers


def _offer(
    line_id: Any, discount: Any, amount: Decimal, known: dict[str, dict[str, Any]], line: Any
) -> OfferFact:
    if isinstance(discount, dict):
        known = {**known, str(discount.get("id")): discount}
        discount = discount.get("id")
    detail = known.get(str(discount), {})
    coupon = detail.get("coupon") or (detail.get("source") or {}).get("coupon")
    coupon_id = coupon.get("id") if isinstance(coupon, dict) else coupon
    percent = coupon.get("percent_off") if isinstance(coupon, dict) else None
    name = coupon.get("name") if isinstance(coupon, dict) else None
    try:
        percent_off = Decimal(str(percent)) if percent is not None else None
    except InvalidOperation:
        percent_off = None
    return OfferFact(
        line_id=line_id if isinstance(line_id, str) else None,
        discount=discount if isinstance(discount, str) else None,
        coupon=coupon_id if isinstance(coupon_id, str) else None,
        description=clean(name) or clean(line.get("description")),
        amount=amount,
        percent_off=percent_off,
    )


# ---- generic signed JSON ------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Verifiable = Literal[
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "title",
    "country",
    "legal_name",
    "tax_id",
    "billing_address",
]


class GenericCustomer(_Model):
    external_id: str = Field(min_length=1, max_length=150)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=32)
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    company: str | None = Field(None, max_length=300)
    title: str | None = Field(None, max_length=300)
    country: str | None = Field(None, min_length=2, max_length=2)
    legal_name: str | None = Field(None, max_length=300)
    tax_id: str | None = Field(None, max_length=64)
    billing_address: str | None = Field(None, max_length=500)
    verified: list[Verifiable] = Field(
        default_factory=list, description="fields the sender vouches for (e.g. a confirmed email)"
    )


class GenericLine(_Model):
    id: str | None = Field(None, max_length=150)
    description: str | None = Field(None, max_length=500)
    amount: Decimal = Field(ge=0)
    discount: Decimal = Field(Decimal(0), ge=0, description="discount given on this line")
    discount_code: str | None = Field(None, max_length=150)
    percent_off: Decimal | None = Field(None, ge=0, le=100)


class GenericInvoice(_Model):
    external_id: str = Field(min_length=1, max_length=150)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    total: Decimal = Field(ge=0)
    paid: Decimal = Field(Decimal(0), ge=0)
    issued_at: datetime
    paid_at: datetime | None = None
    lines: list[GenericLine] = Field(default_factory=list, max_length=500)


class GenericEvent(_Model):
    """``POST /v1/webhooks/{source}``: a CRM contact or a billing customer, and optionally an
    invoice of that customer."""

    id: str = Field(min_length=1, max_length=56, description="unique per event; replays no-op")
    type: Literal["customer.upserted", "invoice.finalized", "invoice.paid"]
    occurred_at: datetime
    customer: GenericCustomer
    invoice: GenericInvoice | None = None


def parse_generic(system: Literal["crm", "billing"], event: GenericEvent) -> BillingEvent:
    c = event.customer
    ref = f"{system}:{c.external_id}"
    if event.type != "customer.upserted" and event.invoice is None:
        raise PayloadError(f"invoice: required for {event.type}")
    raw = c.model_dump(exclude={"external_id", "verified"})
    person = observation(system, ref, event.occurred_at, raw, verified=frozenset(c.verified))
    invoice = None
    if event.invoice is not None and event.type != "customer.upserted":
        inv = event.invoice
        paid = event.type == "invoice.paid"
        invoice = InvoiceFact(
            ref=f"{system}:invoice:{inv.external_id}",
            customer_ref=ref,
            status="paid" if paid else "open",
            currency=inv.currency.lower(),
            total=inv.total,
            paid=(inv.paid or inv.total) if paid else Decimal(0),
            issued_at=inv.issued_at,
            paid_at=(inv.paid_at or event.occurred_at) if paid else None,
            offers=[
                OfferFact(
                    line_id=line.id or str(i),
                    discount=line.discount_code,
                    coupon=line.discount_code,
                    description=line.description,
                    amount=line.discount,
                    percent_off=line.percent_off,
                )
                for i, line in enumerate(inv.lines)
                if line.discount > 0
            ],
        )
    return BillingEvent(event.id, event.type, event.occurred_at, person, invoice)
