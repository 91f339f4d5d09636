"""Event consumers: fold every funnel event into the funnel store, keep the attempts ledger,
and schedule recycles. ``project`` is the one place that knows how; ``feedback import``
uses it too (without scheduling recycles for history)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from feedback import store
from feedback.recycle import RecycleWorker
from leadpact.clock import Clock
from leadpact.contract import ContractBook
from leadpact.events import (
    CloudEvent,
    DealClosed,
    LeadAccepted,
    LeadActivity,
    LeadAssigned,
    LeadContacted,
    LeadCreated,
    LeadRecycled,
    LeadRejected,
    LeadScored,
    PrivacyErased,
    SlaBreached,
)
from leadpact.messaging import UnitOfWork


async def project(
    event: CloudEvent[Any],
    session: AsyncSession,
    contracts: ContractBook,
    *,
    recycles: bool = True,
) -> list[tuple[str, Any]]:
    """Apply one event to the funnel store. Returns the recycles it schedules as
    ``(lead_id, due_at)`` so the caller may wake the worker (none when ``recycles`` is
    False, as when importing history)."""
    data = event.data
    scheduled: list[tuple[str, Any]] = []
    if isinstance(data, LeadCreated):
        await store.touch_lead(
            session,
            data.lead_id,
            created_at__earliest=data.created_at,
            source=data.source.platform,
            campaign=data.source.campaign or data.source.utm_campaign,
        )
        await store.add_touch(
            session,
            data.lead_id,
            data.created_at,
            "lead.created",
            data.source.campaign or data.source.utm_campaign,
        )
    elif isinstance(data, LeadActivity):
        row = await store.lead_facts(session, data.lead_id)
        campaign = data.detail.get("campaign") or data.detail.get("utm_campaign")
        if not isinstance(campaign, str):
            campaign = row.campaign if row is not None else None
        await store.add_touch(session, data.lead_id, data.occurred_at, data.activity, campaign)
    elif isinstance(data, LeadScored):
        if data.tier == "mql":
            row = await store.lead_facts(session, data.lead_id)
            first = row is None or row.mql_at is None or row.mql_at > data.scored_at
            await store.touch_lead(
                session,
                data.lead_id,
                mql_at__earliest=data.scored_at,
                points=data.points if first else None,
                contract_version=event.contractversion if first else None,
                source=None if row is not None and row.source else data.source,
            )
    elif isinstance(data, LeadAssigned):
        await store.touch_lead(session, data.lead_id, owner=data.owner)
    elif isinstance(data, LeadContacted):
        await store.record_attempt(session, data.lead_id, data.channel, data.contacted_at)
        await store.touch_lead(
            session, data.lead_id, first_contact_at__earliest=data.contacted_at, owner=data.owner
        )
    elif isinstance(data, LeadAccepted):
        await store.touch_lead(
            session, data.lead_id, sql_at__earliest=data.accepted_at, owner=data.owner
        )
        await store.cancel_recycles(session, data.lead_id, data.accepted_at)
    elif isinstance(data, LeadRejected):
        await store.touch_lead(
            session,
            data.lead_id,
            rejected_at=data.rejected_at,
            reject_reason=data.reason,
            owner=data.owner,
        )
        row = await store.lead_facts(session, data.lead_id)
        contract = contracts.get(event.contractversion or (row.contract_version if row else None))
        recyclable = contract.recycle is not None and data.reason in contract.recycle.reasons
        if recycles and contract.recycle is not None and recyclable:
            due_at = data.rejected_at + contract.recycle.after
            fresh = await store.schedule_recycle(
                session,
                {
                    "lead_id": data.lead_id,
                    "reason": data.reason,
                    "rejected_at": data.rejected_at,
                    "due_at": due_at,
                    "contract_version": contract.version,
                    "status": store.PENDING,
                },
            )
            if fresh:
                scheduled.append((data.lead_id, due_at))
    elif isinstance(data, LeadRecycled):
        await store.touch_lead(session, data.lead_id, recycled_at=data.recycled_at)
    elif isinstance(data, DealClosed):
        await store.touch_lead(
            session,
            data.lead_id,
            won_at=data.closed_at if data.won else None,
            lost_at=None if data.won else data.closed_at,
            amount=data.amount,
            currency=data.currency,
            owner=data.owner,
        )
        if data.won:
            await store.cancel_recycles(session, data.lead_id, data.closed_at)
    elif isinstance(data, SlaBreached):
        await store.record_breach(session, data.lead_id, data.clause, data.detected_at)
    return scheduled


async def on_funnel_event(
    event: CloudEvent[Any],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    recycle_worker: RecycleWorker,
) -> None:
    for _lead_id, due_at in await project(event, uow.session, contracts):
        recycle_worker.scheduled(due_at)


# Named per event, as the service map reads best; they all fold into the funnel store.
on_lead_created = on_lead_activity = on_lead_scored = on_lead_assigned = on_funnel_event
on_lead_contacted = on_lead_accepted = on_lead_rejected = on_funnel_event
on_lead_recycled = on_deal_closed = on_sla_breached = on_funnel_event


async def on_privacy_erased(
    event: CloudEvent[PrivacyErased], uow: UnitOfWork, clock: Clock
) -> None:
    """Nothing stored here names the person (see ``feedback.domain.erasure``); their events
    still in the outbox lose their free text. Funnel facts stay, so the KPIs add up."""
    await store.erase_pending_events(uow.session, event.data.lead_ids)
