"""Event handlers: each lead and deal event refines the golden record and its timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from crm_sync import store
from crm_sync.domain import email_key, merge_from_lead, phone_key
from leadpact.clock import Clock
from leadpact.events import (
    CloudEvent,
    CustomerUpdated,
    DealClosed,
    LeadAccepted,
    LeadContacted,
    LeadCreated,
    LeadRejected,
)
from leadpact.messaging import UnitOfWork


async def on_lead_created(event: CloudEvent[LeadCreated], uow: UnitOfWork, clock: Clock) -> None:
    lead = event.data
    email, phone = email_key(lead.email), phone_key(lead.phone, lead.country)
    customer = await _recognise(uow, lead.lead_id, email, phone)
    now = clock.now()
    created = customer is None
    if customer is None:
        customer = store.Customer(
            id=str(uuid.uuid4()), status="lead", sources={}, created_at=now, updated_at=now
        )
        uow.session.add(customer)
    incoming = {**lead.model_dump(), "email": email, "phone": phone}
    changes = merge_from_lead(_fields(customer), incoming)
    for change in changes:
        setattr(customer, change.field, change.new)
        customer.sources = {**customer.sources, change.field: f"lead:{lead.lead_id}"}
    if await store.by_lead(uow.session, lead.lead_id) is None:
        uow.session.add(store.CustomerLead(lead_id=lead.lead_id, customer_id=customer.id))
    _note(uow, event, customer.id, lead.created_at, {"source": lead.source.platform})
    if created or changes:
        customer.updated_at = now
        await uow.session.flush()
        _announce(uow, customer, event.contractversion)


async def on_deal_closed(event: CloudEvent[DealClosed], uow: UnitOfWork, clock: Clock) -> None:
    deal = event.data
    customer = await _customer_for_lead(uow, deal.lead_id, clock)
    detail = {"won": deal.won, "amount": str(deal.amount), "currency": deal.currency}
    _note(uow, event, customer.id, deal.closed_at, detail)
    if deal.won:
        customer.status = "customer"
        customer.lifetime_value = (customer.lifetime_value or 0) + deal.amount
        customer.sources = {**customer.sources, "status": f"deal:{deal.lead_id}"}
        customer.updated_at = clock.now()
        await uow.session.flush()
        _announce(uow, customer, event.contractversion)


async def on_sales_activity(
    event: CloudEvent[LeadContacted | LeadAccepted | LeadRejected], uow: UnitOfWork, clock: Clock
) -> None:
    data = event.data
    customer = await _customer_for_lead(uow, data.lead_id, clock)
    detail = data.model_dump(mode="json", exclude={"lead_id"})
    _note(uow, event, customer.id, event.time, detail)


async def _recognise(
    uow: UnitOfWork, lead_id: str, email: str | None, phone: str | None
) -> store.Customer | None:
    """The same person: already linked by lead id, else the same email, else the same phone."""
    found = await store.by_lead(uow.session, lead_id)
    if found is None and email:
        found = await store.by_email(uow.session, email)
    if found is None and phone:
        found = await store.by_phone(uow.session, phone)
    return found


async def _customer_for_lead(uow: UnitOfWork, lead_id: str, clock: Clock) -> store.Customer:
    """Events of other topics may overtake lead.created: keep them on a placeholder record
    that lead.created fills in when it arrives, so nothing is dropped."""
    customer = await store.by_lead(uow.session, lead_id)
    if customer is None:
        now = clock.now()
        customer = store.Customer(
            id=str(uuid.uuid4()), status="lead", sources={}, created_at=now, updated_at=now
        )
        uow.session.add(customer)
        uow.session.add(store.CustomerLead(lead_id=lead_id, customer_id=customer.id))
        await uow.session.flush()
    return customer


def _note(
    uow: UnitOfWork,
    event: CloudEvent[Any],
    customer_id: str,
    occurred_at: datetime,
    detail: dict[str, Any],
) -> None:
    uow.session.add(
        store.TimelineEntry(
            event_id=event.id,
            customer_id=customer_id,
            kind=event.topic,
            occurred_at=occurred_at,
            detail={"lead_id": event.subject, **detail},
        )
    )


def _fields(customer: store.Customer) -> dict[str, Any]:
    return {
        "email": customer.email,
        "phone": customer.phone,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "company": customer.company,
        "title": customer.title,
        "country": customer.country,
    }


def _announce(uow: UnitOfWork, customer: store.Customer, contract_version: str | None) -> None:
    fields = {
        **_fields(customer),
        "status": customer.status,
        "lifetime_value": str(customer.lifetime_value or 0),
    }
    uow.emit(
        CustomerUpdated(customer_id=customer.id, fields=fields, sources=dict(customer.sources)),
        contract_version,
    )
