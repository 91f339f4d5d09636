"""The champion model as the handlers see it: lead records in, a probability and reasons out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scoring.model.calibrated import CalibratedModel
from scoring.runtime import Prediction
from scoring.store import ModelRow


class ModelPredictor:
    def __init__(self, model: CalibratedModel) -> None:
        self.model = model

    @property
    def version(self) -> str:
        return self.model.version

    def predict(self, record: dict[str, Any]) -> Prediction:
        return self.predict_many([record])[0]

    def predict_many(self, records: Sequence[dict[str, Any]]) -> list[Prediction]:
        """One model call for a batch's leads; each gets what it would get alone."""
        if not records:  # every lead of the batch disqualified: LightGBM rejects no rows
            return []
        explained = self.model.explain_many(self.model.schema.encode(records))
        version = self.model.version
        return [Prediction(round(p, 4), reasons, version) for p, reasons in explained]


def model_of(row: ModelRow) -> CalibratedModel:
    model = CalibratedModel.from_parts(row.manifest, row.booster)
    model.version = row.version
    return model
