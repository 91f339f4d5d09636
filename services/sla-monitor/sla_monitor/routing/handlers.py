"""Routing's own event handlers: remember what rules look at (``lead.created``) and follow
an owner the CRM chose (``lead.assigned`` with reason ``crm`` from another service)."""

from __future__ import annotations

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
    lead = event.data
    # A returning customer's account owner is whoever owns its latest earlier lead now;
    # found here, once, so that assigning the MQL reads it with the other facts.
    account_owner = (
        await store.latest_owner(uow.session, lead.customer_lead_ids)
        if lead.existing_customer
        else None
    )
    await store.save_facts(
        uow.session,
        {
            "lead_id": lead.lead_id,
            "country": lead.country.upper()[:8] if lead.country else None,
            "company_size": lead.company_size,
            "industry": lead.industry[:100] if lead.industry else None,
            "source": lead.source.platform[:100] if lead.source.platform else None,
            "created_at": lead.created_at,
            "existing_customer": lead.existing_customer,
            "account_owner": account_owner,
        },
    )


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
    row = await store.facts(uow.session, scored.lead_id)
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
