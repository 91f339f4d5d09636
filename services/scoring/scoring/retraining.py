"""Background retraining: when enough new labels arrived (or a period passed) train a
challenger on the labelled leads, compare it with the champion on the latest, time-ordered
slice, and promote it only when it is better. Training runs in a thread: live scoring never
waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from sqlalchemy import select

from leadpact.service import ServiceContext
from scoring import store
from scoring.domain.rules import Occurrence
from scoring.features import live_record
from scoring.model.calibrated import CalibratedModel, fit
from scoring.model.evaluation import calibration_table, figures
from scoring.model.schema import Kind, infer_schema
from scoring.predictor import ModelPredictor, model_of
from scoring.runtime import ScoringRuntime

log = structlog.get_logger("scoring.retraining")


@dataclass(frozen=True)
class Outcome:
    challenger: CalibratedModel
    metrics: dict[str, Any]
    champion_metrics: dict[str, Any] | None

    @property
    def better(self) -> bool:
        if self.champion_metrics is None:
            return True
        return float(self.metrics["auc"]) > float(self.champion_metrics["auc"])


def compare(
    records: list[dict[str, Any]],
    labels: list[int],
    kinds: dict[str, Kind],
    holdout_share: float,
    champion: CalibratedModel | None,
) -> Outcome:
    """CPU work, run off the event loop: the challenger learns from the earlier leads and
    both models are judged on the latest ``holdout_share`` of them."""
    y = np.array(labels, dtype=np.int_)
    cut = int(len(y) * (1 - holdout_share))
    if len(set(y[cut:].tolist())) < 2:
        raise ValueError("the holdout slice has one class only")
    schema = infer_schema(records[:cut], list(kinds), kinds)
    challenger = fit(schema, schema.encode(records[:cut]), y[:cut], holdout_share)
    holdout = records[cut:]
    p = challenger.predict(schema.encode(holdout))
    metrics = {**figures(y[cut:], p), "calibration": calibration_table(y[cut:], p, 5)}
    champion_metrics = None
    if champion is not None:
        champion_metrics = figures(y[cut:], champion.predict(champion.schema.encode(holdout)))
    return Outcome(challenger, metrics, champion_metrics)


class Retrainer:
    def __init__(self, ctx: ServiceContext, scoring: ScoringRuntime) -> None:
        self.ctx = ctx
        self.scoring = scoring
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        # Labels counted at the last round that could not train: wait for more before
        # trying again, instead of re-training on the same data every poll.
        self.stuck_at: int | None = None

    async def start(self) -> None:
        await self.refresh_champion()
        self.task = asyncio.create_task(self._loop(), name="scoring-retrainer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.scoring.settings.retrain_poll_seconds)
            try:
                await self.refresh_champion()
                if await self.due():
                    await self.retrain()
            except Exception:  # a failed round must not end the loop; the next one retries
                log.exception("retraining round failed")

    async def refresh_champion(self) -> None:
        """Follow the registry (another instance, or the API, may have promoted)."""
        async with self.ctx.db.session() as session:
            row = await store.champion(session)
        current = self.scoring.predictor
        if row is None:
            self.scoring.predictor = None
        elif current is None or current.version != row.version:
            self.scoring.predictor = ModelPredictor(model_of(row))

    async def due(self) -> bool:
        settings = self.scoring.settings
        async with self.ctx.db.session() as session:
            last = await store.latest_trained(session)
            total, new = await store.count_labels_since(session, last.created_at if last else None)
        if total < settings.min_labels or total == self.stuck_at:
            return False
        if new >= settings.retrain_min_new_labels:
            return True
        if last is None:
            return new > 0
        age = self.ctx.clock.now() - _aware(last.created_at)
        return new > 0 and age.total_seconds() >= settings.retrain_every_days * 86400

    async def retrain(self) -> store.ModelRow | None:
        """One round; returns the registered challenger (promoted or not), or None when
        there is not enough to learn from."""
        async with self.lock:
            async with self.ctx.db.session() as session:
                counted, _ = await store.count_labels_since(session, None)
            records, labels, window = await self._training_rows()
            if len(labels) < self.scoring.settings.min_labels:
                return None
            self.stuck_at = None
            kinds = dict(self.scoring.settings.features)
            for kind in self.scoring.settings.activity_types:
                kinds[f"activity:{kind}"] = "numeric"
                kinds[f"days_since:{kind}"] = "numeric"
            champion = self.scoring.predictor
            champion_model = champion.model if isinstance(champion, ModelPredictor) else None
            try:
                outcome = await asyncio.to_thread(
                    compare,
                    records,
                    labels,
                    kinds,  # type: ignore[arg-type]
                    self.scoring.settings.holdout_share,
                    champion_model,
                )
            except ValueError as exc:
                log.warning("retraining skipped", reason=str(exc))
                # Counted before reading the rows: labels arriving meanwhile make it due again.
                self.stuck_at = counted
                return None
            return await self._register(outcome, window)

    async def _training_rows(
        self,
    ) -> tuple[list[dict[str, Any]], list[int], tuple[datetime | None, datetime | None]]:
        settings = self.scoring.settings
        contract = self.ctx.contracts.current(self.ctx.clock.now().date())
        free_mail = contract.lists.get(settings.free_mail_list, [])
        async with self.ctx.db.session() as session:
            pairs = await store.labelled_leads(session)
            rows = await session.scalars(select(store.ActivityRow))
            by_lead: dict[str, list[Occurrence]] = defaultdict(list)
            for a in rows:
                by_lead[a.lead_id].append(Occurrence(a.activity, _aware(a.occurred_at)))
        records, labels = [], []
        for lead, label in pairs:
            # Behaviour up to the moment sales decided: what a score could have known.
            decided = _aware(label.labelled_at)
            seen = [o for o in by_lead.get(lead.lead_id, []) if o.occurred_at <= decided]
            records.append(
                live_record(
                    {**lead.fields, "source": lead.source},
                    seen,
                    activity_kinds=settings.activity_types,
                    half_life=settings.activity_half_life,
                    free_mail=free_mail,
                    now=decided,
                )
            )
            labels.append(label.label)
        window = (pairs[0][0].created_at, pairs[-1][0].created_at) if pairs else (None, None)
        return records, labels, window

    async def _register(
        self, outcome: Outcome, window: tuple[datetime | None, datetime | None]
    ) -> store.ModelRow:
        now = self.ctx.clock.now()
        model = outcome.challenger
        model.version = f"m-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        metrics = {**outcome.metrics, "champion_on_holdout": outcome.champion_metrics}
        model.metrics = metrics
        async with self.ctx.db.session() as session:
            row = store.ModelRow(
                version=model.version,
                status="challenger",
                origin="retrain",
                created_at=now,
                training_from=window[0],
                training_to=window[1],
                feature_schema=model.schema.to_json(),
                metrics=metrics,
                manifest=model.manifest(),
                booster=model.booster.model_to_string(),
            )
            session.add(row)
            if outcome.better:
                await store.promote(session, row, now)
            await session.commit()
        if outcome.better:
            self.scoring.predictor = ModelPredictor(model)
        log.info(
            "model trained", version=model.version, promoted=outcome.better, auc=metrics["auc"]
        )
        return row


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
