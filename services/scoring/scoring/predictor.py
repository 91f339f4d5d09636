"""The champion model as the handlers see it: a lead record in, a probability and reasons out."""

from __future__ import annotations

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
        probability, reasons = self.model.explain(self.model.schema.encode([record]))
        return Prediction(round(probability, 4), reasons, self.model.version)


def model_of(row: ModelRow) -> CalibratedModel:
    model = CalibratedModel.from_parts(row.manifest, row.booster)
    model.version = row.version
    return model
