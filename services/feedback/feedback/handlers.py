"""Event consumers: fold every funnel event into the funnel store, keep the attempts ledger,
and schedule recycles. ``project`` is the one place that knows how; ``feedback import``
uses it too (without scheduling recycles for history). The hot topics also have batch
handlers (``on_leads_*``): a consumer batch's events in one statement per table, with the
facts from the same ``feedback.domain.projection`` functions ``project`` uses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from feedback import store
from feedback.domain import projection
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
        await store.touch_lead(session, data.lead_id, **projection.created_facts(data))
        await store.add_touch(**_creation_touch(data), session=session)
    elif isinstance(data, LeadActivity):
        row = await store.lead_facts(session, data.lead_id)
        campaign = data.detail.get("campaign") or data.detail.get("utm_campaign")
        if not isinstance(campaign, str):
            campaign = row.campaign if row is not None else None
        await store.add_touch(session, data.lead_id, data.occurred_at, data.activity, campaign)
    elif isinstance(data, LeadScored):
        if data.tier == "mql":
            row = await store.lead_facts(session, data.lead_id)
            facts = projection.mql_facts(data, event.contractversion, row)
            await store.touch_lead(session, data.lead_id, **facts)
    elif isinstance(data, LeadAssigned):
        await store.touch_lead(session, data.lead_id, **projection.assigned_facts(data))
    elif isinstance(data, LeadContacted):
        await store.record_attempt(session, data.lead_id, data.channel, data.contacted_at)
        await store.touch_lead(session, data.lead_id, **projection.contacted_facts(data))
    elif isinstance(data, LeadAccepted):
        await store.touch_lead(session, data.lead_id, **projection.accepted_facts(data))
        await store.cancel_recycles(session, data.lead_id, data.accepted_at)
    elif isinstance(data, LeadRejected):
        await store.touch_lead(session, data.lead_id, **projection.rejected_facts(data))
        row = await store.lead_facts(session, data.lead_id)
        recycle = _recycle_of(event, row.contract_version if row else None, contracts)
        if recycles and recycle is not None and await store.schedule_recycle(session, recycle):
            scheduled.append((data.lead_id, recycle["due_at"]))
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


def _recycle_of(
    event: CloudEvent[LeadRejected], stored_version: str | None, contracts: ContractBook
) -> dict[str, Any] | None:
    """The recycle a rejection schedules under its contract (the event's version, else the
    lead's MQL's), or None when the contract does not recycle its reason."""
    data = event.data
    contract = contracts.get(event.contractversion or stored_version)
    if contract.recycle is None or data.reason not in contract.recycle.reasons:
        return None
    return {
        "lead_id": data.lead_id,
        "reason": data.reason,
        "rejected_at": data.rejected_at,
        "due_at": data.rejected_at + contract.recycle.after,
        "contract_version": contract.version,
        "status": store.PENDING,
    }


async def on_funnel_event(
    event: CloudEvent[Any],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    recycle_worker: RecycleWorker,
) -> None:
    for _lead_id, due_at in await project(event, uow.session, contracts):
        recycle_worker.scheduled(due_at)


# ---- batch handlers: a consumer batch's events of one topic, one statement per table ------
# Same rows as ``on_funnel_event`` on each event in order (the rule of batch handlers):
# the facts come from ``feedback.domain.projection`` like the one-event path's, and each
# statement runs its rows in the batch's order (executemany), so a lead twice in a batch
# and the ids of ledger rows come out as one by one. feedback emits nothing from these.


def _creation_touch(data: LeadCreated) -> dict[str, Any]:
    """The touchpoint a new lead makes (``store.add_touch``'s arguments)."""
    return {
        "lead_id": data.lead_id,
        "at": data.created_at,
        "kind": "lead.created",
        "campaign": projection.campaign_of(data),
    }


async def on_leads_created(
    events: Sequence[CloudEvent[LeadCreated]], uow: UnitOfWork, clock: Clock
) -> None:
    session = uow.session
    await store.touch_leads(
        session, [(e.data.lead_id, projection.created_facts(e.data)) for e in events]
    )
    await store.add_touches(session, [_creation_touch(e.data) for e in events])


async def on_leads_scored(
    events: Sequence[CloudEvent[LeadScored]],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
) -> None:
    """An MQL's facts depend on what its row held before it: the rows of the batch's MQLs
    are read in one select. A lead with two MQLs in the batch would read what its first
    one wrote, so its MQLs go one by one (after the others: they touch other rows)."""
    session = uow.session
    mqls = [e for e in events if e.data.tier == "mql"]
    times = Counter(e.data.lead_id for e in mqls)
    once = [e for e in mqls if times[e.data.lead_id] == 1]
    if once:
        stored = await store.lead_facts_of(session, [e.data.lead_id for e in once])
        await store.touch_leads(
            session,
            [
                (
                    e.data.lead_id,
                    projection.mql_facts(e.data, e.contractversion, stored.get(e.data.lead_id)),
                )
                for e in once
            ],
        )
    for event in mqls:
        if times[event.data.lead_id] > 1:
            await project(event, session, contracts)


async def on_leads_assigned(
    events: Sequence[CloudEvent[LeadAssigned]], uow: UnitOfWork, clock: Clock
) -> None:
    await store.touch_leads(
        uow.session, [(e.data.lead_id, projection.assigned_facts(e.data)) for e in events]
    )


async def on_leads_contacted(
    events: Sequence[CloudEvent[LeadContacted]], uow: UnitOfWork, clock: Clock
) -> None:
    session = uow.session
    await store.record_attempts(
        session,
        [
            {
                "lead_id": e.data.lead_id,
                "channel": e.data.channel,
                "contacted_at": e.data.contacted_at,
            }
            for e in events
        ],
    )
    await store.touch_leads(
        session, [(e.data.lead_id, projection.contacted_facts(e.data)) for e in events]
    )


async def on_leads_accepted(
    events: Sequence[CloudEvent[LeadAccepted]], uow: UnitOfWork, clock: Clock
) -> None:
    session = uow.session
    await store.touch_leads(
        session, [(e.data.lead_id, projection.accepted_facts(e.data)) for e in events]
    )
    await store.cancel_recycles_of(session, [(e.data.lead_id, e.data.accepted_at) for e in events])


async def on_leads_rejected(
    events: Sequence[CloudEvent[LeadRejected]],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    recycle_worker: RecycleWorker,
) -> None:
    """One upsert and one read for the batch; the recycles one by one, in order, as each
    must know whether it is new (a redelivered rejection schedules nothing). The read
    after every upsert sees what each event's own read would: a rejection does not
    change the contract version it looks up."""
    session = uow.session
    await store.touch_leads(
        session, [(e.data.lead_id, projection.rejected_facts(e.data)) for e in events]
    )
    stored = await store.lead_facts_of(session, list({e.data.lead_id: None for e in events}))
    for event in events:
        row = stored.get(event.data.lead_id)
        recycle = _recycle_of(event, row.contract_version if row else None, contracts)
        if recycle is not None and await store.schedule_recycle(session, recycle):
            recycle_worker.scheduled(recycle["due_at"])


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
