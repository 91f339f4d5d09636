"""Event handlers: remember what a lead is and does, score it, announce the score."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leadpact.clock import Clock
from leadpact.contract import Contract, ContractBook
from leadpact.events import (
    CloudEvent,
    DealClosed,
    LeadAccepted,
    LeadActivity,
    LeadCreated,
    LeadRejected,
    LeadScored,
    PrivacyErased,
    Tier,
)
from leadpact.messaging import UnitOfWork
from scoring import store
from scoring.domain.rules import (
    Occurrence,
    RuleOutcome,
    apply_rules,
    decide_tier,
    lead_fields,
    worth_announcing,
)
from scoring.features import live_record
from scoring.runtime import Prediction, ScoringRuntime
from scoring.settings import ScoringSettings


async def on_lead_created(
    event: CloudEvent[LeadCreated],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
) -> None:
    """Store the lead once and give it its first score; a replayed ``lead.created``, or one
    of a lead erased before it arrived, changes nothing. The batch handler's logic for one
    event: its prebuilt Core statements cost a third of the ORM's (2.8 -> 1.1 ms of CPU per
    lead on SQLite, notes/issue-9-scoring-batch.md)."""
    await on_leads_created([event], uow, clock, contracts, scoring)


async def on_leads_created(
    events: Sequence[CloudEvent[LeadCreated]],
    uow: UnitOfWork,
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
) -> None:
    """A consumer batch of ``lead.created``, in order: one statement per step for the
    whole batch (store the leads not known yet, read their activities, store their scores)
    and one model call.

    A lead new here has no score yet (a score is only stored beside its lead's row, and
    lead rows are never deleted), so its first score is always announced: no query for the
    last announced one. The same lead twice in a batch (a producer retry under a new event
    id) goes one event at a time: the first stores it, the second finds it known."""
    if len({event.data.lead_id for event in events}) < len(events):
        for event in events:
            await on_leads_created([event], uow, clock, contracts, scoring)
        return
    connection = await uow.connection()
    rows = [lead_row(event.data) for event in events]
    stored = await store.add_new_leads(connection, rows)
    leads = [row for row in rows if row["lead_id"] in stored]
    if not leads:
        return
    lead_ids = [lead["lead_id"] for lead in leads]
    activities = await store.activities_of_leads(connection, lead_ids)
    scores = judge_new_leads(clock, contracts, scoring, leads, activities)
    await store.add_scores(connection, [score for score, _ in scores])
    for (score, contract_version), lead in zip(scores, leads, strict=True):
        announce(uow, scoring, score, lead["source"], contract_version)


def lead_row(lead: LeadCreated) -> dict[str, Any]:
    """The columns of the lead's :class:`store.LeadFeatures` row."""
    raw = lead.model_dump(mode="json", exclude={"lead_id", "source", "consent", "raw_ref"})
    return {
        "lead_id": lead.lead_id,
        "fields": lead_fields(raw),
        "source": lead.source.platform,
        "created_at": lead.created_at,
        "erased_at": None,
    }


def judge_new_leads(
    clock: Clock,
    contracts: ContractBook,
    scoring: ScoringRuntime,
    leads: Sequence[dict[str, Any]],
    activities: dict[str, list[Occurrence]],
) -> list[tuple[dict[str, Any], str]]:
    """Each new lead's first score (as :func:`score_lead` would give it) and the version
    of the contract it was judged under; the model sees all leads that need it at once."""
    predictor = scoring.predictor  # read once: the trainer may swap it meanwhile
    judged = []
    for lead in leads:
        contract = contracts.current(lead["created_at"].date())
        now = clock.now()
        occurrences = activities.get(lead["lead_id"], [])
        outcome = apply_rules(contract, lead["fields"], occurrences, now)
        record = None
        if predictor is not None and outcome.disqualified_by is None:
            record = model_record(
                scoring, contract, lead["fields"], lead["source"], occurrences, now
            )
        judged.append((lead, contract, outcome, record, now))
    records = [record for *_, record, _ in judged if record is not None]
    predictions = iter(predictor.predict_many(records) if predictor is not None else [])
    return [
        (
            verdict(
                scoring,
                contract,
                lead["lead_id"],
                outcome,
                None if record is None else next(predictions),
                previous=None,  # a new lead's first score
                trigger="lead.created",
                now=now,
            ),
            contract.version,
        )
        for lead, contract, outcome, record, now in judged
    ]


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
    predictor = scoring.predictor  # read once: the trainer may swap it meanwhile
    prediction = None
    if predictor is not None and outcome.disqualified_by is None:
        prediction = predictor.predict(
            model_record(scoring, contract, lead.fields, lead.source, occurrences, now)
        )
    previous = await store.latest_announced(uow.session, lead.lead_id)
    score = verdict(
        scoring,
        contract,
        lead.lead_id,
        outcome,
        prediction,
        None if previous is None else (previous.tier, previous.points),  # type: ignore[arg-type]
        trigger,
        now,
    )
    row = store.ScoreRow(**score)
    uow.session.add(row)
    announce(uow, scoring, score, lead.source, contract.version)
    return row


def model_record(
    scoring: ScoringRuntime,
    contract: Contract,
    fields: dict[str, Any],
    source: str | None,
    occurrences: list[Occurrence],
    now: datetime,
) -> dict[str, Any]:
    """The lead as the model reads it (``scoring.features``)."""
    return live_record(
        {**fields, "source": source},
        occurrences,
        activity_kinds=scoring.settings.activity_types,
        half_life=scoring.settings.activity_half_life,
        free_mail=contract.lists.get(scoring.settings.free_mail_list, []),
        now=now,
    )


def verdict(
    scoring: ScoringRuntime,
    contract: Contract,
    lead_id: str,
    outcome: RuleOutcome,
    prediction: Prediction | None,
    previous: tuple[Tier, int] | None,
    trigger: str,
    now: datetime,
) -> dict[str, Any]:
    """The score's row (its columns): the rules' points and the model's probability make
    the tier; it goes out as ``lead.scored`` when it differs enough from ``previous``, the
    last score announced."""
    probability, model_version, reasons = None, None, list(outcome.reasons)
    if prediction is not None:
        probability, model_version = prediction.probability, prediction.model_version
        reasons.extend(prediction.reasons)
    tier = decide_tier(contract, outcome, probability)
    return {
        "lead_id": lead_id,
        "points": outcome.points,
        "probability": probability,
        "tier": tier,
        "reasons": reasons,
        "model_version": model_version,
        "contract_version": contract.version,
        "trigger": trigger,
        "announced": worth_announcing(
            previous, tier, outcome.points, scoring.settings.rescore_min_points
        ),
        "scored_at": now,
    }


def announce(
    uow: UnitOfWork,
    scoring: ScoringRuntime,
    score: dict[str, Any],
    source: str | None,
    contract_version: str,
) -> None:
    """Emit ``lead.scored`` for an announced score; count the score once committed."""
    if score["announced"]:
        uow.emit(
            LeadScored(
                lead_id=score["lead_id"],
                points=score["points"],
                probability=score["probability"],
                tier=score["tier"],
                reasons=score["reasons"],
                model_version=score["model_version"],
                source=source,
                scored_at=score["scored_at"],
            ),
            contract_version,
        )
    uow.after_commit(scoring.leads_scored.labels(score["tier"]).inc)


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
