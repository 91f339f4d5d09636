"""Event handlers: each lead and deal event refines the golden record and its timeline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from crm_sync import store
from crm_sync.domain import observation
from crm_sync.lead_batches import ingest_leads
from crm_sync.records import announce, ingest, new_customer, timeline_row
from crm_sync.runtime import Runtime
from leadpact.clock import Clock
from leadpact.events import (
    CloudEvent,
    DealClosed,
    LeadAccepted,
    LeadContacted,
    LeadCreated,
    LeadRejected,
)
from leadpact.messaging import UnitOfWork


async def on_lead_created(
    event: CloudEvent[LeadCreated], uow: UnitOfWork, clock: Clock, crm: Runtime
) -> None:
    lead = event.data
    obs = observation("lead", f"lead:{lead.lead_id}", lead.created_at, lead.model_dump())
    now = clock.now()
    customer, changed = await ingest(uow, now, obs, crm.resolution, lead_id=lead.lead_id)
    await _note(uow, event, customer.id, lead.created_at, {"source": lead.source.platform})
    if changed:
        await announce(uow, customer, event.contractversion, crm.resolution, now)


async def on_leads_created(
    events: Sequence[CloudEvent[LeadCreated]], uow: UnitOfWork, clock: Clock, crm: Runtime
) -> None:
    """A consumer batch of ``lead.created``: the same effect as :func:`on_lead_created` on
    each in order, with a few statements for the batch instead of ~10 per lead (see
    :mod:`crm_sync.lead_batches`)."""
    one_by_one = partial(_on_lead_created_in, uow=uow, clock=clock, crm=crm)
    await ingest_leads(uow, events, clock, crm.resolution, one_by_one)


async def _on_lead_created_in(
    event: CloudEvent[LeadCreated], *, uow: UnitOfWork, clock: Clock, crm: Runtime
) -> None:
    await on_lead_created(event, uow, clock, crm)


async def on_deal_closed(
    event: CloudEvent[DealClosed], uow: UnitOfWork, clock: Clock, crm: Runtime
) -> None:
    deal = event.data
    customer = await _customer_for_lead(uow, deal.lead_id, clock)
    detail = {"won": deal.won, "amount": str(deal.amount), "currency": deal.currency}
    await _note(uow, event, customer.id, deal.closed_at, detail)
    if deal.won:
        customer.status = "customer"
        customer.lifetime_value = (customer.lifetime_value or 0) + deal.amount
        customer.sources = {**customer.sources, "status": f"deal:{deal.lead_id}"}
        customer.updated_at = clock.now()
        await uow.session.flush()
        await announce(uow, customer, event.contractversion, crm.resolution, clock.now())


async def on_sales_activity(
    event: CloudEvent[LeadContacted | LeadAccepted | LeadRejected], uow: UnitOfWork, clock: Clock
) -> None:
    data = event.data
    customer = await _customer_for_lead(uow, data.lead_id, clock)
    detail = data.model_dump(mode="json", exclude={"lead_id"})
    await _note(uow, event, customer.id, event.time, detail)


async def _customer_for_lead(uow: UnitOfWork, lead_id: str, clock: Clock) -> store.Customer:
    """Events of other topics may overtake lead.created: keep them on a placeholder record
    that lead.created fills in when it arrives, so nothing is dropped."""
    customer = await store.by_lead(uow.session, lead_id)
    if customer is not None:
        await store.lock(uow.session, customer)
    if customer is None:
        customer = new_customer(clock.now())
        uow.session.add(customer)
        uow.session.add(store.CustomerLead(lead_id=lead_id, customer_id=customer.id))
        await uow.session.flush()
    return customer


async def _note(
    uow: UnitOfWork,
    event: CloudEvent[Any],
    customer_id: str,
    occurred_at: datetime,
    detail: dict[str, Any],
) -> None:
    """One timeline entry, written at once through Core (its customer row is in the table
    already: :func:`ingest` and :func:`_customer_for_lead` flush it)."""
    connection = await uow.connection()
    await connection.execute(
        store.INSERT_TIMELINE, timeline_row(event, customer_id, occurred_at, detail)
    )
