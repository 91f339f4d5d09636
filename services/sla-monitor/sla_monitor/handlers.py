"""Event handlers: arm every clause for an MQL (one event, or a consumer batch of them),
and resolve clauses as sales acts."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from leadpact.clock import Clock
from leadpact.contract import Contract, ContractBook
from leadpact.events import CloudEvent, LeadAccepted, LeadContacted, LeadRejected, LeadScored
from leadpact.messaging import UnitOfWork
from sla_monitor import store
from sla_monitor.breach import breach_event, count_breach, owning_teams
from sla_monitor.domain import (
    NO_RESPONSE,
    TIMED_CLAUSES,
    Deadline,
    answerable_team,
    attempts_satisfied,
    deadlines,
)
from sla_monitor.metrics import SlaMetrics
from sla_monitor.notify.queue import Notifier
from sla_monitor.routing import assign
from sla_monitor.routing import store as routing_store
from sla_monitor.routing.escalation import Escalator
from sla_monitor.routing.handlers import facts_of, lead_facts
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
    partition = uow.partition_of(event.id)
    rows = _deadline_rows(scored, contract, armed, clock.now(), owner, team, partition)
    fresh = await store.arm_all(uow.session, rows)
    _count_armed(uow, deadline_watch, sla_metrics, armed, fresh)
    # lead.contacted travels on another topic and may overtake lead.scored: contacts
    # already in the ledger count from the moment the lead became an MQL.
    ledger = await store.attempts_of(uow.session, scored.lead_id)
    earlier = sorted(at for _, at in ledger if at >= scored.scored_at)
    if earlier:
        await _first_contact(uow, sla_metrics, scored.lead_id, earlier[0], None)
        await _judge_attempts(uow, contracts, scored.lead_id, earlier[-1])


async def on_leads_scored(
    events: Sequence[CloudEvent[LeadScored]],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    deadline_watch: DeadlineWatch,
    sla_metrics: SlaMetrics,
    routing_metrics: RoutingMetrics,
    notifier: Notifier,
) -> None:
    """A consumer batch of ``lead.scored``, with the effect of :func:`on_lead_scored` on
    each event in order, in a handful of statements instead of ~8 per MQL.

    The MQLs whose scoring is a plain first assignment go together, in runs of one
    contract version: one read of what is known of the batch's leads, each team's
    round-robin state read once, one insert each for the run's assignments, their
    history, their notifications and all their deadlines. An MQL seen before (an owner
    already, a contact before the score, scored twice in the batch) or a returning
    customer is the unusual case: it goes through :func:`on_lead_scored` alone, in its
    place in the order (the run before it written first)."""
    mqls = [event for event in events if event.data.tier == "mql"]
    if not mqls:
        return
    lead_ids = list(dict.fromkeys(event.data.lead_id for event in mqls))
    facts, seen = await routing_store.known_leads(uow.session, lead_ids)
    extras = (contracts, deadline_watch, sla_metrics, routing_metrics, notifier)
    run: list[CloudEvent[LeadScored]] = []
    for event in mqls:
        lead_id = event.data.lead_id
        row = facts.get(lead_id)
        if lead_id in seen or (row is not None and row.existing_customer):
            await _arm_run(run, facts, uow, clock, *extras)
            run = []
            await on_lead_scored(event, uow, clock, *extras)
            await _as_if_alone(uow)
        else:
            if run and run[0].contractversion != event.contractversion:
                await _arm_run(run, facts, uow, clock, *extras)
                run = []
            run.append(event)
        seen.add(lead_id)
    await _arm_run(run, facts, uow, clock, *extras)


async def _arm_run(
    run: Sequence[CloudEvent[LeadScored]],
    facts: Mapping[str, Any],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    deadline_watch: DeadlineWatch,
    sla_metrics: SlaMetrics,
    routing_metrics: RoutingMetrics,
    notifier: Notifier,
) -> None:
    """Route and arm a run of first-time MQLs of one contract version (see
    :func:`on_leads_scored`): their owners in turn, then every deadline in one insert."""
    if not run:
        return
    contract = contracts.get(run[0].contractversion)
    owners: list[tuple[str | None, str | None]] = [(None, None)] * len(run)
    if contract.routing is not None:
        mqls = []
        for event in run:
            lead_id = event.data.lead_id
            mqls.append(
                assign.NewMql(lead_id, lead_facts(event.data, facts.get(lead_id)), clock.now())
            )
        assignments = await assign.assign_run(
            uow, contract.routing, mqls, contract.version, routing_metrics, notifier
        )
        owners = [(a.owner, a.team) for a in assignments]
    now = clock.now()
    armed = [deadlines(contract, event.data.scored_at) for event in run]
    rows = [
        row
        for event, lead_armed, (owner, team) in zip(run, armed, owners, strict=True)
        for row in _deadline_rows(
            event.data, contract, lead_armed, now, owner, team, uow.partition_of(event.id)
        )
    ]
    fresh = await store.arm_leads(uow.session, rows)
    for event, lead_armed in zip(run, armed, strict=True):
        lead_id = event.data.lead_id
        clauses = {clause for lead, clause in fresh if lead == lead_id}
        _count_armed(uow, deadline_watch, sla_metrics, lead_armed, clauses)


async def _as_if_alone(uow: UnitOfWork) -> None:
    """After an event handled alone inside a batch: the next starts as in a session of its
    own, as the dispatcher does between events (no ORM object or cache left over)."""
    await uow.session.flush()
    uow.session.expunge_all()
    uow.session.info.clear()


def _deadline_rows(
    scored: LeadScored,
    contract: Contract,
    armed: Sequence[Deadline],
    now: datetime,
    owner: str | None,
    team: str | None,
    partition: int | None,
) -> list[dict[str, Any]]:
    """The deadline rows of an MQL's clauses, naming its owner and team."""
    return [
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
            # The broker's partition of the lead's key: the instance that owns it in the
            # consumer group watches this deadline.
            "partition": partition,
        }
        for deadline in armed
    ]


def _count_armed(
    uow: UnitOfWork,
    deadline_watch: DeadlineWatch,
    sla_metrics: SlaMetrics,
    armed: Sequence[Deadline],
    fresh: Collection[str],
) -> None:
    """Count the clauses armed now (``fresh``) and wake the watch for the timed ones."""
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
