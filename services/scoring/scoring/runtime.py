"""What scoring's handlers and routes share, built once per service context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter

from leadpact.service import ServiceContext
from scoring.settings import ScoringSettings


@dataclass(frozen=True)
class Prediction:
    probability: float
    reasons: list[str]
    model_version: str


class Predictor(Protocol):
    """The champion model, when one is loaded; ``None`` means the rules alone decide."""

    @property
    def version(self) -> str: ...

    def predict(self, record: dict[str, Any]) -> Prediction: ...

    def predict_many(self, records: Sequence[dict[str, Any]]) -> list[Prediction]:
        """``predict`` of each record, in one model call (a consumer batch's leads)."""
        ...


@dataclass
class ScoringRuntime:
    settings: ScoringSettings
    leads_scored: Counter
    predictor: Predictor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def runtime(ctx: ServiceContext) -> ScoringRuntime:
    """The context's runtime, made on first use (routes and setup share it)."""
    found = ctx.extras.get("scoring")
    if isinstance(found, ScoringRuntime):
        return found
    made = ScoringRuntime(
        settings=ScoringSettings(),
        leads_scored=Counter(
            "leadpact_leads_scored_total",
            "Scores given, by tier (re-scores included).",
            ["tier"],
            registry=ctx.metrics.registry,
        ),
    )
    ctx.extras["scoring"] = made
    return made
