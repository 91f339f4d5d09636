"""One path for every sales activity, whichever door it came in by (the API, a HubSpot or a
generic webhook): check it against the contract, then emit its event through the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from feedback import store
from feedback.domain.activities import (
    NO_RESPONSE,
    Accepted,
    Contacted,
    Lost,
    Problem,
    Rejected,
    Won,
    attempts_owed,
    check_reason,
    no_response_problem,
    to_event,
)
from feedback.metrics import FeedbackMetrics
from leadpact.clock import Clock
from leadpact.contract import Contract, ContractBook
from leadpact.events import CloudEvent, LeadRejected
from leadpact.messaging import UnitOfWork

AnyActivity = Contacted | Accepted | Rejected | Won | Lost
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class Recorded:
    event: CloudEvent[Any]


def contract_for(contracts: ContractBook, row: store.LeadRow | None, clock: Clock) -> Contract:
    """The version the lead was judged under when it became an MQL, else the one in force."""
    if row is not None and row.contract_version:
        return contracts.get(row.contract_version)
    return contracts.current(clock.now().date())


async def check(
    uow: UnitOfWork, contracts: ContractBook, clock: Clock, activity: AnyActivity
) -> tuple[Contract, Problem | None]:
    row = await store.lead(uow.session, activity.lead_id)
    contract = contract_for(contracts, row, clock)
    if activity.at is not None and activity.at > clock.now() + FUTURE_TOLERANCE:
        return contract, Problem(422, "at", "at: is in the future", {})
    if not isinstance(activity, Rejected):
        return contract, None
    problem = check_reason(contract, activity.reason, activity.note)
    if problem is None and activity.reason == NO_RESPONSE and contract.attempts is not None:
        ledger = await store.attempts_of(uow.session, activity.lead_id)
        owed = attempts_owed(contract.attempts, row.mql_at if row else None, ledger)
        problem = no_response_problem(contract.attempts, owed, clock.now())
    return contract, problem


async def record(
    uow: UnitOfWork,
    contracts: ContractBook,
    clock: Clock,
    metrics: FeedbackMetrics,
    activity: AnyActivity,
) -> Recorded | Problem:
    """Check and emit one activity in ``uow`` (not committed: the caller commits, then calls
    :func:`count`)."""
    contract, problem = await check(uow, contracts, clock, activity)
    if problem is not None:
        metrics.refused.labels(problem.field, str(problem.status)).inc()
        return problem
    at = activity.at or clock.now()
    event = uow.emit(to_event(activity, at), contract.version)
    if isinstance(activity, Contacted):
        # Also straight into the ledger, so a no_response right after is judged on it; the
        # event coming back through the bus adds nothing (unique per lead, channel, time).
        await store.record_attempt(uow.session, activity.lead_id, activity.channel, at)
    return Recorded(event)


def count(metrics: FeedbackMetrics, recorded: Recorded, via: str) -> None:
    """Count an activity once its transaction committed."""
    data = recorded.event.data
    metrics.activities.labels(recorded.event.topic, via).inc()
    if isinstance(data, LeadRejected):
        metrics.rejections.labels(data.reason).inc()
