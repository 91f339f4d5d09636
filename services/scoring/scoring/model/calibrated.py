"""A LightGBM classifier whose scores are calibrated probabilities, and its explanations.

Calibration is isotonic, fitted on the latest slice of the training rows (time-ordered), so
the probabilities are honest for leads that come after the ones the trees learned from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from scoring.model.schema import FeatureSchema, Matrix

Labels = npt.NDArray[np.int_]

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10,
    "min_data_per_group": 50,
    "verbosity": -1,
    "num_threads": 1,
    "seed": 7,
    "deterministic": True,
}
# Fixed rounds, not early stopping on the time-ordered slice: lead populations drift over
# time, and stopping on the latest slice stopped far too early (AUC 0.72 vs 0.77 on the
# bank benchmark).
ROUNDS = 300


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw model probability to observed frequency (isotonic steps)."""

    xs: list[float]
    ys: list[float]

    def apply(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if len(self.xs) < 2:
            return raw
        return np.asarray(np.interp(raw, self.xs, self.ys), dtype=np.float64)


@dataclass
class CalibratedModel:
    schema: FeatureSchema
    booster: lgb.Booster
    calibration: Calibration
    version: str = "unversioned"
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def raw(self, x: Matrix) -> npt.NDArray[np.float64]:
        return np.asarray(self.booster.predict(x), dtype=np.float64)

    def predict(self, x: Matrix) -> npt.NDArray[np.float64]:
        return np.clip(self.calibration.apply(self.raw(x)), 1e-4, 1 - 1e-4)

    def explain(self, x_row: Matrix, top: int = 3) -> tuple[float, list[str]]:
        """The probability of one lead and its reasons (see :meth:`explain_many`)."""
        return self.explain_many(x_row[:1], top)[0]

    def explain_many(self, x: Matrix, top: int = 3) -> list[tuple[float, list[str]]]:
        """Each lead's probability and its reasons: for each feature, how much the
        calibrated probability would drop without its ``pred_contrib`` (top ``top`` up and
        ``top`` down), e.g. ``+0.12 title: director``.

        One LightGBM call for all rows (a consumer batch), each row computed on its own, so
        a lead gets the same answer alone or in a batch. One thread: on a row or a few,
        LightGBM's thread pool cost 5x the CPU of the work itself (its threads spin while
        waiting) and took a core from the event loop."""
        contrib = np.asarray(
            self.booster.predict(x, pred_contrib=True, num_threads=1), dtype=np.float64
        ).reshape(len(x), -1)
        margins = contrib.sum(axis=1)
        features = contrib[:, :-1]  # the last column is the bias
        probabilities = self.calibration.apply(_sigmoid_array(margins))
        without = self.calibration.apply(_sigmoid_array(margins[:, None] - features))
        deltas = probabilities[:, None] - without
        names = self.schema.names
        return [
            (float(probabilities[i]), self._reasons(names, x[i], deltas[i], top))
            for i in range(len(x))
        ]

    def _reasons(
        self,
        names: list[str],
        row: npt.NDArray[np.float64],
        deltas: npt.NDArray[np.float64],
        top: int,
    ) -> list[str]:
        order = np.argsort(deltas)
        ups = [j for j in order[::-1][:top] if deltas[j] > 0.005]
        downs = [j for j in order[:top] if deltas[j] < -0.005]
        return [
            f"{deltas[j]:+.2f} {names[j]}: {self.schema.describe(j, row[j])}"
            for j in [*ups, *downs]
        ]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "booster.txt").write_text(self.booster.model_to_string())
        (directory / "model.json").write_text(json.dumps(self.manifest(), indent=2))

    def manifest(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "schema": self.schema.to_json(),
            "calibration": {"xs": self.calibration.xs, "ys": self.calibration.ys},
            "metrics": self.metrics,
            "meta": self.meta,
        }

    @classmethod
    def from_parts(cls, manifest: dict[str, Any], booster_text: str) -> CalibratedModel:
        return cls(
            schema=FeatureSchema.from_json(manifest["schema"]),
            booster=lgb.Booster(model_str=booster_text),
            calibration=Calibration(**manifest["calibration"]),
            version=manifest.get("version", "unversioned"),
            metrics=dict(manifest.get("metrics", {})),
            meta=dict(manifest.get("meta", {})),
        )

    @classmethod
    def load(cls, directory: Path) -> CalibratedModel:
        manifest = json.loads((directory / "model.json").read_text())
        return cls.from_parts(manifest, (directory / "booster.txt").read_text())


def _sigmoid_array(margins: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-margins)), dtype=np.float64)


def fit(schema: FeatureSchema, x: Matrix, y: Labels, holdout_share: float = 0.2) -> CalibratedModel:
    """Learn the calibration from a model trained on the earlier rows and scored on the
    latest ``holdout_share`` (rows must be in time order), then train the trees again on
    every row (as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does). Class
    imbalance: positives are weighted up to balance; calibration undoes the skew."""
    cut = int(len(y) * (1 - holdout_share))
    if cut < 10 or len(y) - cut < 10 or len(set(y[:cut].tolist())) < 2:
        raise ValueError("too few rows (or one class only) to train and calibrate")
    early = _trees(schema, x[:cut], y[:cut])
    raw = np.asarray(early.predict(x[cut:]), dtype=np.float64)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    isotonic.fit(raw, y[cut:])
    calibration = Calibration(
        [float(v) for v in isotonic.X_thresholds_], [float(v) for v in isotonic.y_thresholds_]
    )
    return CalibratedModel(schema, _trees(schema, x, y), calibration)


def _trees(schema: FeatureSchema, x: Matrix, y: Labels) -> lgb.Booster:
    positives = max(int(y.sum()), 1)
    params = {
        **PARAMS,
        "scale_pos_weight": (len(y) - positives) / positives,
        # Small training sets (a young registry) still get trees that split.
        "min_data_in_leaf": min(int(PARAMS["min_data_in_leaf"]), max(3, len(y) // 20)),
        "min_data_per_group": min(int(PARAMS["min_data_per_group"]), max(3, len(y) // 20)),
    }
    # Names stay in the schema: LightGBM rejects JSON-special characters ("activity:x").
    data = lgb.Dataset(x, y, categorical_feature=schema.categorical_indices)
    return lgb.train(params, data, num_boost_round=ROUNDS)
