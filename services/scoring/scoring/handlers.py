"""Event handlers: remember what a lead is and does, score it, announce the score."""

from __future__ import annotations

from datetime import datetime

from leadpact.clock import Clock
from leadpact.contract import ContractBook
from leadpact.events import (
    CloudEvent,
    DealClosed,
    LeadAccepted,
    LeadActivity,
    LeadCreated,
    LeadRejected,
    LeadScored,
    PrivacyErased,
)
from leadpact.messaging import UnitOfWork
from scoring import store
from scoring.domain.rules import Occurrence, apply_rules, decide_tier, lead_fields, worth_announcing
from scoring.features import live_record
from scoring.runtime import ScoringRuntime
from scoring.settings import ScoringSettings


async def on_lead_created(
    event: CloudEvent[LeadCreated],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
) -> None:
    lead = event.data
    raw = lead.model_dump(mode="json", exclude={"lead_id", "source", "consent", "raw_ref"})
    row = store.LeadFeatures(
        lead_id=lead.lead_id,
        fields=lead_fields(raw),
        source=lead.source.platform,
        created_at=lead.created_at,
    )
    if not await store.save_lead(uow.session, row):
        return
    await score_lead(uow, clock, contracts, scoring, row, lead.created_at, "lead.created")


async def on_lead_activity(
    event: CloudEvent[LeadActivity],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
) -> None:
    activity = event.data
    fresh = await store.record_activity(
        uow.session,
        store.ActivityRow(
            lead_id=activity.lead_id,
            activity=activity.activity,
            occurred_at=activity.occurred_at,
        ),
    )
    lead = await store.lead_features(uow.session, activity.lead_id)
    # Activity of a lead we have not seen is kept: it counts once lead.created arrives.
    # An erased lead is not scored again: its rules would now read blanks, not the lead.
    if fresh and lead is not None and lead.erased_at is None:
        await score_lead(
            uow, clock, contracts, scoring, lead, activity.occurred_at, "lead.activity"
        )


async def score_lead(
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
    lead: store.LeadFeatures,
    event_time: datetime,
    trigger: str,
) -> store.ScoreRow:
    """Score ``lead`` under the contract in force at ``event_time``; store the score and emit
    ``lead.scored`` when it is new enough to matter."""
    contract = contracts.current(event_time.date())
    now = clock.now()
    activities = await store.activities_of(uow.session, lead.lead_id)
    occurrences = [Occurrence(a.activity, a.occurred_at) for a in activities]
    outcome = apply_rules(contract, lead.fields, occurrences, now)
    probability, model_version, reasons = None, None, list(outcome.reasons)
    predictor = scoring.predictor  # read once: the trainer may swap it meanwhile
    if predictor is not None and outcome.disqualified_by is None:
        record = live_record(
            {**lead.fields, "source": lead.source},
            occurrences,
            activity_kinds=scoring.settings.activity_types,
            half_life=scoring.settings.activity_half_life,
            free_mail=contract.lists.get(scoring.settings.free_mail_list, []),
            now=now,
        )
        prediction = predictor.predict(record)
        probability, model_version = prediction.probability, prediction.model_version
        reasons.extend(prediction.reasons)
    tier = decide_tier(contract, outcome, probability)
    previous = await store.latest_announced(uow.session, lead.lead_id)
    announce = worth_announcing(
        None if previous is None else (previous.tier, previous.points),  # type: ignore[arg-type]
        tier,
        outcome.points,
        scoring.settings.rescore_min_points,
    )
    row = store.ScoreRow(
        lead_id=lead.lead_id,
        points=outcome.points,
        probability=probability,
        tier=tier,
        reasons=reasons,
        model_version=model_version,
        contract_version=contract.version,
        trigger=trigger,
        announced=announce,
        scored_at=now,
    )
    uow.session.add(row)
    if announce:
        uow.emit(
            LeadScored(
                lead_id=lead.lead_id,
                points=outcome.points,
                probability=probability,
                tier=tier,
                reasons=reasons,
                model_version=model_version,
                source=lead.source,
                scored_at=now,
            ),
            contract.version,
        )
    uow.after_commit(scoring.leads_scored.labels(tier).inc)
    return row


async def on_lead_accepted(
    event: CloudEvent[LeadAccepted], uow: UnitOfWork, clock: Clock, scoring: ScoringRuntime
) -> None:
    await store.set_label(uow.session, event.data.lead_id, 1, "accepted", clock.now())


async def on_lead_rejected(
    event: CloudEvent[LeadRejected], uow: UnitOfWork, clock: Clock, scoring: ScoringRuntime
) -> None:
    label = rejection_label(event.data.reason, scoring.settings)
    if label is not None:
        fact = f"rejected:{event.data.reason}"
        await store.set_label(uow.session, event.data.lead_id, label, fact, clock.now())


async def on_deal_closed(
    event: CloudEvent[DealClosed], uow: UnitOfWork, clock: Clock, scoring: ScoringRuntime
) -> None:
    # A lost deal was still a lead sales accepted: only a win changes the label.
    if event.data.won:
        await store.set_label(uow.session, event.data.lead_id, 1, "deal_won", clock.now())


def rejection_label(reason: str, settings: ScoringSettings) -> int | None:
    if reason in settings.positive_reasons:
        return 1
    if reason in settings.negative_reasons:
        return 0
    return None  # e.g. no_response says nothing about the lead's quality


async def on_privacy_erased(
    event: CloudEvent[PrivacyErased],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
) -> None:
    """Forget the person behind these leads; their scores stay as numbers (KPIs, training)."""
    now = clock.now()
    free_mail = contracts.current(now.date()).lists.get(scoring.settings.free_mail_list, [])
    await store.erase_leads(uow.session, event.data.lead_ids, free_mail, now)
