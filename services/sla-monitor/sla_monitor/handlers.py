"""Event handlers: arm every clause for an MQL, and resolve clauses as sales acts."""

from __future__ import annotations

from datetime import datetime

from leadpact.clock import Clock
from leadpact.contract import ContractBook
from leadpact.events import CloudEvent, LeadAccepted, LeadContacted, LeadRejected, LeadScored
from leadpact.messaging import UnitOfWork
from sla_monitor import store
from sla_monitor.breach import breach_event, count_breach, owning_teams
from sla_monitor.domain import (
    NO_RESPONSE,
    TIMED_CLAUSES,
    answerable_team,
    attempts_satisfied,
    deadlines,
)
from sla_monitor.metrics import SlaMetrics
from sla_monitor.notify.queue import Notifier
from sla_monitor.routing import assign
from sla_monitor.routing.escalation import Escalator
from sla_monitor.routing.handlers import facts_of
from sla_monitor.routing.metrics import RoutingMetrics
from sla_monitor.watch import DeadlineWatch


async def on_lead_scored(
    event: CloudEvent[LeadScored],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    deadline_watch: DeadlineWatch,
    sla_metrics: SlaMetrics,
    routing_metrics: RoutingMetrics,
    notifier: Notifier,
) -> None:
    scored = event.data
    if scored.tier != "mql":
        return
    contract = contracts.get(event.contractversion)
    owner: str | None = None
    team: str | None = None
    if contract.routing is not None:
        # Owner and deadline in one unit of work: the deadline names who answers for it.
        assignment = await assign.assign_new(
            uow,
            clock.now(),
            contract.routing,
            await facts_of(uow, scored),
            scored.lead_id,
            contract.version,
            routing_metrics,
            notifier,
        )
        owner, team = assignment.owner, assignment.team
    armed = deadlines(contract, scored.scored_at)
    now = clock.now()
    fresh = await store.arm_all(
        uow.session,
        [
            {
                "lead_id": scored.lead_id,
                "clause": deadline.clause,
                "started_at": scored.scored_at,
                "armed_at": now,
                "due_at": deadline.due_at,
                "at_risk_at": deadline.at_risk_at,
                "owner": owner,
                "team": team,
                "source": scored.source,
                "contract_version": contract.version,
                # The broker's partition of the lead's key: the instance that owns it
                # in the consumer group watches this deadline.
                "partition": uow.partition,
            }
            for deadline in armed
        ],
    )
    for deadline in armed:
        if deadline.clause not in fresh:
            continue
        uow.after_commit(sla_metrics.armed.labels(deadline.clause).inc)
        if deadline.clause in TIMED_CLAUSES:
            # Woken before our commit is visible; the watch reads due rows from the
            # store, and looks again a moment later for a time already past.
            deadline_watch.armed(deadline.due_at)
            if deadline.at_risk_at is not None:
                deadline_watch.armed(deadline.at_risk_at)
    # lead.contacted travels on another topic and may overtake lead.scored: contacts
    # already in the ledger count from the moment the lead became an MQL.
    ledger = await store.attempts_of(uow.session, scored.lead_id)
    earlier = sorted(at for _, at in ledger if at >= scored.scored_at)
    if earlier:
        await _first_contact(uow, sla_metrics, scored.lead_id, earlier[0], None)
        await _judge_attempts(uow, contracts, scored.lead_id, earlier[-1])


async def on_lead_contacted(
    event: CloudEvent[LeadContacted],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    sla_metrics: SlaMetrics,
) -> None:
    contact = event.data
    await store.record_attempt(uow.session, contact.lead_id, contact.channel, contact.contacted_at)
    await _first_contact(uow, sla_metrics, contact.lead_id, contact.contacted_at, contact.owner)
    await _judge_attempts(uow, contracts, contact.lead_id, contact.contacted_at)


async def _first_contact(
    uow: UnitOfWork, sla_metrics: SlaMetrics, lead_id: str, at: datetime, owner: str | None
) -> None:
    """Meet the first-contact clause (when in time) and record the response time, once."""
    started_at = await store.record_first_contact(uow.session, lead_id, at, owner)
    if started_at is None:
        return  # not an MQL we watch (yet), or not its first contact
    await store.mark_met(uow.session, lead_id, "first_contact", at)
    response_seconds = max(0.0, (at - started_at).total_seconds())
    uow.after_commit(lambda: sla_metrics.first_response.observe(response_seconds))


async def _judge_attempts(
    uow: UnitOfWork, contracts: ContractBook, lead_id: str, at: datetime
) -> None:
    """Meet the attempts clause once the ledger shows enough attempts and channels."""
    row = await store.deadline(uow.session, lead_id, "attempts")
    if row is None or row.status != store.OPEN:
        return
    rule = contracts.get(row.contract_version).attempts
    ledger = await store.attempts_of(uow.session, lead_id)
    if rule is not None and attempts_satisfied(rule, row.started_at, ledger):
        await store.mark_met(uow.session, lead_id, "attempts", at, on_time_only=False)


async def on_lead_accepted(
    event: CloudEvent[LeadAccepted], uow: UnitOfWork, clock: Clock, routing_metrics: RoutingMetrics
) -> None:
    accepted = event.data
    await assign.close(uow, accepted.lead_id, routing_metrics)
    await store.mark_met(uow.session, accepted.lead_id, "outcome", accepted.accepted_at)
    # Accepted: nobody gave up on the lead, so there is no attempts promise left to judge.
    await store.mark_met(
        uow.session, accepted.lead_id, "attempts", accepted.accepted_at, on_time_only=False
    )


async def on_lead_rejected(
    event: CloudEvent[LeadRejected],
    uow: UnitOfWork,
    clock: Clock,
    sla_metrics: SlaMetrics,
    routing_metrics: RoutingMetrics,
    escalator: Escalator,
) -> None:
    rejected = event.data
    lead_id, at = rejected.lead_id, rejected.rejected_at
    await assign.close(uow, lead_id, routing_metrics)
    await store.mark_met(uow.session, lead_id, "outcome", at)
    if rejected.reason != NO_RESPONSE:
        await store.mark_met(uow.session, lead_id, "attempts", at, on_time_only=False)
        return
    # Given up as "does not respond" while the attempts clause is still open: too few
    # attempts or channels, which is exactly the attempts breach.
    row = await store.deadline(uow.session, lead_id, "attempts")
    if row is None or row.status != store.OPEN:
        return
    detected = clock.now()
    team = answerable_team(row.clause, (await owning_teams(uow.session, [lead_id])).get(lead_id))
    if await store.mark_breached(uow.session, row.id, detected, team):
        uow.emit(breach_event(row, detected, team), row.contract_version)
        await escalator.breached(uow, row, detected)  # tells owner and manager
        clause, source, due_at = row.clause, row.source, row.due_at
        uow.after_commit(lambda: count_breach(sla_metrics, clause, source, team, due_at, detected))
