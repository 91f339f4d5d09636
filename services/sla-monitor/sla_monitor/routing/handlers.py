"""Routing's own event handlers: remember what rules look at (``lead.created``) and follow
an owner the CRM chose (``lead.assigned`` with reason ``crm`` from another service)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leadpact.clock import Clock
from leadpact.contract import ContractBook
from leadpact.events import CloudEvent, LeadAssigned, LeadCreated, LeadScored
from leadpact.messaging import UnitOfWork
from sla_monitor.notify.queue import Notifier
from sla_monitor.routing import assign, store
from sla_monitor.routing.domain import LeadFacts
from sla_monitor.routing.metrics import RoutingMetrics

SERVICE_SOURCE = "sla-monitor"
FOLLOWED = ("crm", "account_owner")
"""Owners decided elsewhere that routing follows: the CRM's, and a returning customer's
account owner (flagged by crm-sync)."""


async def on_lead_created(event: CloudEvent[LeadCreated], uow: UnitOfWork, clock: Clock) -> None:
    await store.save_facts(uow.session, [await _facts_row(uow, event.data)])


async def on_leads_created(
    events: Sequence[CloudEvent[LeadCreated]], uow: UnitOfWork, clock: Clock
) -> None:
    """A consumer batch of ``lead.created``: the facts of all its leads in one insert (a
    lead twice keeps its first facts, as one by one). Same effect as
    :func:`on_lead_created` on each event in order: the account owners read for returning
    customers come from the assignments, which no ``lead.created`` writes."""
    await store.save_facts(uow.session, [await _facts_row(uow, event.data) for event in events])


async def _facts_row(uow: UnitOfWork, lead: LeadCreated) -> dict[str, Any]:
    """The lead's routing facts. A returning customer's account owner is whoever owns its
    latest earlier lead now; found here, once, so that assigning the MQL reads it with
    the other facts."""
    account_owner = (
        await store.latest_owner(uow.session, lead.customer_lead_ids)
        if lead.existing_customer
        else None
    )
    return {
        "lead_id": lead.lead_id,
        "country": lead.country.upper()[:8] if lead.country else None,
        "company_size": lead.company_size,
        "industry": lead.industry[:100] if lead.industry else None,
        "source": lead.source.platform[:100] if lead.source.platform else None,
        "created_at": lead.created_at,
        "existing_customer": lead.existing_customer,
        "account_owner": account_owner,
    }


async def on_lead_assigned(
    event: CloudEvent[LeadAssigned],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    routing_metrics: RoutingMetrics,
    notifier: Notifier,
) -> None:
    assigned = event.data
    if event.source == SERVICE_SOURCE or assigned.reason not in FOLLOWED:
        return  # our own decisions coming back, or a change routing need not follow
    contract = contracts.get(assigned.contract_version or event.contractversion)
    await assign.follow_crm(
        uow,
        clock.now(),
        contract.routing,
        assigned.lead_id,
        assigned.owner,
        assigned.contract_version or event.contractversion,
        routing_metrics,
        notifier,
        reason=assigned.reason,
    )


async def facts_of(uow: UnitOfWork, scored: LeadScored) -> LeadFacts:
    """What the rules see: the score, and the firmographics of ``lead.created`` when it
    arrived (it travels on another topic; a field not known yet matches no condition)."""
    return lead_facts(scored, await store.facts(uow.session, scored.lead_id))


def lead_facts(scored: LeadScored, row: Any | None) -> LeadFacts:
    """:func:`facts_of` from the lead's facts row (None: no ``lead.created`` yet)."""
    return LeadFacts(
        tier=scored.tier,
        probability=scored.probability,
        source=(row.source if row is not None and row.source else scored.source),
        country=row.country if row is not None else None,
        company_size=row.company_size if row is not None else None,
        industry=row.industry if row is not None else None,
        existing_customer=bool(row is not None and row.existing_customer),
        account_owner=row.account_owner if row is not None else None,
    )
