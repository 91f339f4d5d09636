"""Scoring benchmark on UCI Bank Marketing (bank-additional-full.csv, ``duration`` dropped):
5-fold stratified CV of the calibrated LightGBM vs logistic regression vs the naive-Bayes
frequency model vs points only; training time; single-lead inference with explanation; a
calibration plot. Usage: ``python -m bench.scoring [--csv PATH]``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold

from bench.record import RESULTS, Figure, record
from bench.scoring.baselines import FrequencyBayes, PointsOnly, logistic, points_of
from scoring.model.calibrated import fit
from scoring.model.evaluation import figures
from scoring.model.schema import FeatureSchema
from scoring.model.table import read_table
from scoring.model.training_set import training_set

matplotlib.use("Agg")
from matplotlib import pyplot

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "bank-additional-full.csv"
Idx = npt.NDArray[np.int_]
Fit = Callable[[Idx, Idx], npt.NDArray[np.float64]]


def cross_validated(
    y: npt.NDArray[np.int_], one_fold: Fit
) -> tuple[dict[str, float], float, npt.NDArray[np.float64]]:
    oof = np.zeros(len(y))
    seconds = []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=7).split(np.zeros(len(y)), y):
        started = time.perf_counter()
        oof[test] = one_fold(np.sort(train), test)
        seconds.append(time.perf_counter() - started)
    return figures(y, oof), float(np.mean(seconds)), oof


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", type=Path, default=DATA)
    opts = parser.parse_args()
    table = read_table(opts.csv)
    data = training_set(table, "output", "yes", ["duration"])
    schema, x, y = data.schema, data.x, data.y
    records = [r for r in table.rows if r.get("output") is not None]
    points = points_of(records)
    # The CV folds are i.i.d., so the calibration slice is too: rows are shuffled once
    # (the file is sorted by date and its conversion rate drifts from 5% to 50%).
    order = np.random.default_rng(7).permutation(len(y))
    xs, ys, ps = x[order], y[order], points[order]

    def lightgbm(train: Idx, test: Idx) -> npt.NDArray[np.float64]:
        return fit(schema, xs[train], ys[train]).predict(xs[test])

    def lightgbm_file_order(train: Idx, test: Idx) -> npt.NDArray[np.float64]:
        return fit(schema, x[train], y[train]).predict(x[test])

    def regression(train: Idx, test: Idx) -> npt.NDArray[np.float64]:
        model = logistic(schema).fit(xs[train], ys[train])
        return np.asarray(model.predict_proba(xs[test])[:, 1], dtype=np.float64)

    def bayes(train: Idx, test: Idx) -> npt.NDArray[np.float64]:
        return FrequencyBayes(schema).fit(xs[train], ys[train]).predict(xs[test])

    def rubric(train: Idx, test: Idx) -> npt.NDArray[np.float64]:
        return PointsOnly().fit(ps[train], ys[train]).predict(ps[test])

    results: dict[str, tuple[dict[str, float], float]] = {}
    curves: dict[str, npt.NDArray[np.float64]] = {}
    for name, one_fold, labels in [
        ("lightgbm", lightgbm, ys),
        ("logistic_regression", regression, ys),
        ("naive_bayes_frequency", bayes, ys),
        ("points_only", rubric, ys),
        ("lightgbm_time_ordered_calibration", lightgbm_file_order, y),
    ]:
        metrics, seconds, oof = cross_validated(labels, one_fold)
        results[name] = (metrics, seconds)
        curves[name] = oof
        print(
            f"{name:36s} auc={metrics['auc']:.4f} log_loss={metrics['log_loss']:.4f} "
            f"pr_auc={metrics['pr_auc']:.4f} brier={metrics['brier']:.4f} "
            f"train_s={seconds:.2f}",
            flush=True,
        )
    p50, p99 = inference_latency(schema, xs, ys, [records[i] for i in order])
    print(f"single-lead inference with explanation: p50={p50:.3f} ms p99={p99:.3f} ms")
    plot(ys, y, curves, RESULTS / "scoring-calibration.png")
    figs = {
        f"{name}_{key}": Figure(float(m[key]), "", "higher" if key == "auc" else "lower")
        for name, (m, _) in results.items()
        for key in ("auc", "log_loss")
    }
    figs.update(
        {
            f"{name}_train_seconds": Figure(round(s, 3), "s", "lower")
            for name, (_, s) in results.items()
        }
    )
    figs["inference_p50_ms"] = Figure(round(p50, 3), "ms", "lower")
    figs["inference_p99_ms"] = Figure(round(p99, 3), "ms", "lower", "< 5")
    record(
        "scoring",
        figs,
        notes=f"{opts.csv.name}, n={len(y)}, 5-fold stratified CV, duration dropped",
    )


def inference_latency(
    schema: FeatureSchema,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int_],
    records: list[dict[str, str | None]],
) -> tuple[float, float]:
    """Milliseconds to encode one lead record, score it and explain it (pred_contrib and
    reasons), as the service does per lead."""
    model = fit(schema, x, y)
    timings = []
    for lead in records[:2000]:
        started = time.perf_counter()
        model.explain(schema.encode([lead]))
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def plot(
    ys: npt.NDArray[np.int_],
    y: npt.NDArray[np.int_],
    curves: dict[str, npt.NDArray[np.float64]],
    path: Path,
) -> None:
    figure, axis = pyplot.subplots(figsize=(6, 6))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    for name, p in curves.items():
        labels = y if name.endswith("time_ordered_calibration") else ys
        edges = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
        means = [(p[which == b].mean(), labels[which == b].mean()) for b in np.unique(which)]
        axis.plot(*zip(*means, strict=True), marker="o", label=name)
    axis.set_xlabel("predicted probability")
    axis.set_ylabel("observed subscription rate")
    axis.set_title("Calibration, out-of-fold (bank marketing, 5-fold)")
    axis.legend(fontsize=8)
    path.parent.mkdir(exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
