"""Honest figures for a model: cross-validated and on a time-ordered holdout."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from scoring.model.calibrated import Labels, fit
from scoring.model.schema import FeatureSchema, Matrix

Probabilities = npt.NDArray[np.float64]


def figures(y: Labels, p: Probabilities) -> dict[str, Any]:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "auc": round(float(roc_auc_score(y, p)), 4),
        "pr_auc": round(float(average_precision_score(y, p)), 4),
        "log_loss": round(float(log_loss(y, p, labels=[0, 1])), 4),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "n": len(y),
        "positives": int(y.sum()),
    }


def calibration_table(y: Labels, p: Probabilities, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted vs observed rate per probability decile."""
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    table = []
    for lo, hi in itertools.pairwise(edges):
        inside = (p >= lo) & (p <= hi)
        if inside.any():
            table.append(
                {
                    "predicted": round(float(p[inside].mean()), 4),
                    "observed": round(float(y[inside].mean()), 4),
                    "n": int(inside.sum()),
                }
            )
    return table


def out_of_fold(
    y: Labels,
    train_predict: Callable[[npt.NDArray[np.int_], npt.NDArray[np.int_]], Probabilities],
    folds: int = 5,
    seed: int = 7,
) -> Probabilities:
    """Each row's probability from a model that never saw it (stratified K folds)."""
    oof = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
        oof[test_idx] = train_predict(train_idx, test_idx)
    return oof


def cross_validate(schema: FeatureSchema, x: Matrix, y: Labels, folds: int = 5) -> dict[str, Any]:
    """Stratified K-fold figures for the calibrated LightGBM (rows in time order)."""

    def one_fold(train_idx: npt.NDArray[np.int_], test_idx: npt.NDArray[np.int_]) -> Probabilities:
        model = fit(schema, x[train_idx], y[train_idx])
        return model.predict(x[test_idx])

    folds = max(2, min(folds, int(y.sum()), int(len(y) - y.sum())))
    return figures(y, out_of_fold(y, one_fold, folds))
