"""Entity resolution, probabilistic part: blocking keys (phonetic and prefix keys, sorted
neighbourhood), string similarity (rapidfuzz) per field, and a Fellegi–Sunter model that
turns each field's agreement level into a log2 likelihood-ratio weight. Two thresholds on
the summed weight split pairs into match, review (the uncertain band) and non-match.

The m/u probabilities are configuration; :func:`estimate` refits them without labels by
expectation–maximisation over candidate pairs. The same code runs the service (one record
against its candidates) and batch linkage (the FEBRL benchmark). Pure: no I/O."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Literal

import jellyfish
import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.process import cdist, cpdist

from crm_sync.billing import COMPANY_WORDS
from crm_sync.domain import fold

Record = Mapping[str, str | None]
Decision = Literal["match", "review", "non_match"]


@lru_cache(maxsize=1 << 14)  # pure; the same companies come back with every lead
def company_key(name: str | None) -> str:
    """A company name without legal form words: ``Acme Robotics, S.L.`` → ``acme robotics``."""
    words = fold(name).split()
    while len(words) > 1 and words[-1] in COMPANY_WORDS:
        words.pop()
    if len(words) > 2 and "".join(words[-2:]) in COMPANY_WORDS:
        words = words[:-2]
    return " ".join(words)


PREPARE: dict[str, Callable[[str | None], str]] = {
    "fold": fold,
    "company": company_key,
    "digits": lambda v: "".join(c for c in (v or "") if c.isdigit()),
    "raw": lambda v: (v or "").strip(),
}

SIMILARITY: dict[str, Callable[[str, str], float]] = {
    "jaro_winkler": lambda a, b: JaroWinkler.similarity(a, b),
    "token_set": lambda a, b: fuzz.token_set_ratio(a, b) / 100.0,
    "token_sort": lambda a, b: fuzz.token_sort_ratio(a, b) / 100.0,
    "levenshtein": lambda a, b: Levenshtein.normalized_similarity(a, b),
    "exact": lambda a, b: 1.0 if a == b else 0.0,
}


# Similarities are compared with this slack: the vectorised path computes in float32.
EPSILON = 1e-6
VECTOR_SCORERS: dict[str, tuple[Callable[..., float], float]] = {
    "jaro_winkler": (JaroWinkler.normalized_similarity, 1.0),
    "token_set": (fuzz.token_set_ratio, 100.0),
    "token_sort": (fuzz.token_sort_ratio, 100.0),
    "levenshtein": (Levenshtein.normalized_similarity, 1.0),
}


def _phonetic(fn: Callable[[str], str]) -> Callable[[str], str]:
    def key(value: str) -> str:
        return fn(value.replace(" ", "")) if value else ""

    return key


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "exact": lambda v: v,
    "metaphone": _phonetic(jellyfish.metaphone),
    "soundex": _phonetic(jellyfish.soundex),
    "nysiis": _phonetic(jellyfish.nysiis),
    "first1": lambda v: v[:1],
    "first3": lambda v: v[:3],
    "word1": lambda v: v.split()[0] if v else "",
}


@dataclass(frozen=True)
class Comparison:
    """One field compared at agreement levels: level ``i`` when the similarity reaches
    ``thresholds[i]``, the last level (disagree) otherwise; missing on either side → no
    evidence (weight 0)."""

    field: str
    method: str = "jaro_winkler"
    thresholds: tuple[float, ...] = (0.97, 0.88)
    m: tuple[float, ...] = (0.90, 0.06, 0.04)
    u: tuple[float, ...] = (0.01, 0.03, 0.96)
    prepare: str = "fold"

    def __post_init__(self) -> None:
        n = len(self.thresholds) + 1
        if len(self.m) != n or len(self.u) != n:
            raise ValueError(f"{self.field}: m and u need {n} levels each")
        if self.method not in SIMILARITY or self.prepare not in PREPARE:
            raise ValueError(f"{self.field}: unknown method or prepare")

    def level(self, a: str, b: str) -> int | None:
        if not a or not b:
            return None
        if a == b:
            return 0
        similarity = SIMILARITY[self.method](a, b)
        for i, threshold in enumerate(self.thresholds):
            if similarity >= threshold - EPSILON:
                return i
        return len(self.thresholds)

    @cached_property  # read for every candidate pair; m and u never change (frozen)
    def weights(self) -> tuple[float, ...]:
        return tuple(
            math.log2(max(m, 1e-9) / max(u, 1e-9)) for m, u in zip(self.m, self.u, strict=True)
        )


Prepared = tuple[str, ...]
BlockingRule = tuple[tuple[str, str], ...]  # ((field, transform), …): parts of one key


@dataclass(frozen=True)
class Score:
    weight: float
    decision: Decision
    levels: tuple[int | None, ...]
    detail: dict[str, dict[str, float | int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class MatchModel:
    """Comparisons, thresholds (log2 weights) and the blocking that finds candidates."""

    comparisons: tuple[Comparison, ...]
    upper: float = 14.0
    lower: float = 8.0
    blocking: tuple[BlockingRule, ...] = ()
    sort_keys: tuple[tuple[str, ...], ...] = ()
    window: int = 3
    max_block: int = 1000

    def prepare(self, record: Record) -> Prepared:
        return tuple(PREPARE[c.prepare](record.get(c.field)) for c in self.comparisons)

    def levels(self, a: Prepared, b: Prepared) -> tuple[int | None, ...]:
        return tuple(c.level(x, y) for c, x, y in zip(self.comparisons, a, b, strict=True))

    def weight_of(self, levels: Sequence[int | None]) -> float:
        return sum(
            c.weights[lv] for c, lv in zip(self.comparisons, levels, strict=True) if lv is not None
        )

    def decide(self, weight: float) -> Decision:
        if weight >= self.upper:
            return "match"
        return "review" if weight >= self.lower else "non_match"

    def score(self, a: Record, b: Record) -> Score:
        levels = self.levels(self.prepare(a), self.prepare(b))
        weight = self.weight_of(levels)
        detail: dict[str, dict[str, float | int | None]] = {
            c.field: {"level": lv, "weight": None if lv is None else round(c.weights[lv], 3)}
            for c, lv in zip(self.comparisons, levels, strict=True)
        }
        return Score(round(weight, 4), self.decide(weight), levels, detail)

    def keys(self, record: Record) -> set[str]:
        """Blocking keys: records sharing one are compared."""
        found: set[str] = set()
        for i, rule in enumerate(self.blocking):
            parts = [TRANSFORMS[t](fold(record.get(f))) for f, t in rule]
            if all(parts):
                found.add(f"{i}:" + "|".join(parts))
        return found

    def sort_key(self, record: Record, which: int = 0) -> str:
        if which >= len(self.sort_keys):
            return ""
        parts = [fold(record.get(f)) for f in self.sort_keys[which]]
        return " ".join(parts) if parts and parts[0] else ""

    def with_parameters(
        self, m: Sequence[Sequence[float]], u: Sequence[Sequence[float]]
    ) -> MatchModel:
        comparisons = tuple(
            replace(c, m=tuple(float(x) for x in mk), u=tuple(float(x) for x in uk))
            for c, mk, uk in zip(self.comparisons, m, u, strict=True)
        )
        return replace(self, comparisons=comparisons)


# Scorers of :func:`best_index`: the same functions as :data:`SIMILARITY`, run by rapidfuzz's
# ``cdist`` over a whole column in C (float64 results: the same values as the scalar calls).
_COLUMN_SCORERS: dict[str, tuple[Callable[..., float], float]] = {
    "jaro_winkler": (JaroWinkler.similarity, 1.0),
    "token_set": (fuzz.token_set_ratio, 100.0),
    "token_sort": (fuzz.token_sort_ratio, 100.0),
    "levenshtein": (Levenshtein.normalized_similarity, 1.0),
}


def best_index(model: MatchModel, prepared: Prepared, others: Sequence[Prepared]) -> int | None:
    """The index of the highest-weighted of ``others`` against ``prepared`` (the first one on
    a tie), or None when there is none: exactly what :meth:`MatchModel.levels` and
    :meth:`MatchModel.weight_of` give pair by pair, computed a field at a time (one rapidfuzz
    call per field instead of Python calls per pair and field). Weights are added in the
    comparisons' order, as :meth:`MatchModel.weight_of` does, so ties break the same way."""
    if not others:
        return None
    totals = [0.0] * len(others)
    for k, c in enumerate(model.comparisons):
        value = prepared[k]
        if not value:  # missing: no evidence for any pair
            continue
        column = [other[k] for other in others]
        weights = c.weights
        disagree = weights[len(c.thresholds)]
        if c.method == "exact":  # unequal values: similarity 0
            similarities = np.zeros(len(column))
            scale = 1.0
        else:
            scorer, scale = _COLUMN_SCORERS[c.method]
            similarities = cdist([value], column, scorer=scorer, dtype=np.float64, workers=1)[0]
        cuts = [threshold - EPSILON for threshold in c.thresholds]
        for n, v in enumerate(column):
            if not v:
                continue
            if v == value:
                totals[n] += weights[0]
                continue
            similarity = float(similarities[n]) / scale
            for i, cut in enumerate(cuts):
                if similarity >= cut:
                    totals[n] += weights[i]
                    break
            else:
                totals[n] += disagree
    best = 0
    for n in range(1, len(totals)):
        if totals[n] > totals[best]:
            best = n
    return best


def best_candidate(
    model: MatchModel, record: Record, candidates: Sequence[tuple[str, Record]]
) -> tuple[str, Score] | None:
    """The highest-scoring candidate id and its score, or None when there is none."""
    n = best_index(model, model.prepare(record), [model.prepare(other) for _, other in candidates])
    if n is None:
        return None
    cid, other = candidates[n]
    return cid, model.score(record, other)


# ---- batch linkage ---------------------------------------------------------------------


def candidate_pairs(
    model: MatchModel, left: Sequence[Record], right: Sequence[Record] | None = None
) -> set[tuple[int, int]]:
    """Pairs to compare: sharing a blocking key, or within ``window`` of each other in a
    sorted-neighbourhood order. Without ``right``, pairs (i < j) within ``left``."""
    dedupe = right is None
    other: Sequence[Record] = left if right is None else right
    pairs: set[tuple[int, int]] = set()
    index_l: dict[str, list[int]] = defaultdict(list)
    index_r: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(left):
        for key in model.keys(rec):
            index_l[key].append(i)
    if not dedupe:
        for j, rec in enumerate(other):
            for key in model.keys(rec):
                index_r[key].append(j)
    for key, ls in index_l.items():
        rs = ls if dedupe else index_r.get(key, [])
        if len(ls) * len(rs) > model.max_block**2:
            continue
        for i in ls:
            for j in rs:
                if dedupe:
                    if i < j:
                        pairs.add((i, j))
                else:
                    pairs.add((i, j))
    for which in range(len(model.sort_keys)):
        entries = [(model.sort_key(r, which), 0, i) for i, r in enumerate(left)]
        if not dedupe:
            entries += [(model.sort_key(r, which), 1, j) for j, r in enumerate(other)]
        entries = sorted(e for e in entries if e[0])
        for pos, (_, side, idx) in enumerate(entries):
            for _, side2, idx2 in entries[pos + 1 : pos + 1 + model.window]:
                if dedupe:
                    pairs.add((min(idx, idx2), max(idx, idx2)))
                elif side != side2:
                    pairs.add((idx, idx2) if side == 0 else (idx2, idx))
    return pairs


def compare_pairs(
    model: MatchModel,
    pairs: Iterable[tuple[int, int]],
    left: Sequence[Record],
    right: Sequence[Record] | None = None,
) -> tuple[list[tuple[int, int]], list[tuple[int | None, ...]]]:
    """The agreement levels of every pair (records prepared once each)."""
    pl = [model.prepare(r) for r in left]
    pr = pl if right is None else [model.prepare(r) for r in right]
    ordered = sorted(pairs)
    return ordered, [model.levels(pl[i], pr[j]) for i, j in ordered]


def level_matrix(
    model: MatchModel,
    pairs: Sequence[tuple[int, int]],
    left: Sequence[Record],
    right: Sequence[Record] | None = None,
) -> npt.NDArray[np.int64]:
    """The same levels as :meth:`MatchModel.levels`, for many pairs at once (one rapidfuzz
    ``cpdist`` call per field, in C): a (pairs × comparisons) matrix, -1 where missing."""
    pl = [model.prepare(r) for r in left]
    pr = pl if right is None else [model.prepare(r) for r in right]
    ii = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
    jj = np.fromiter((j for _, j in pairs), dtype=np.int64, count=len(pairs))
    out = np.empty((len(pairs), len(model.comparisons)), dtype=np.int64)
    for k, c in enumerate(model.comparisons):
        col_l = np.array([p[k] for p in pl], dtype=object)[ii]
        col_r = np.array([p[k] for p in pr], dtype=object)[jj]
        missing = (col_l == "") | (col_r == "")
        equal = col_l == col_r
        if c.method == "exact" or not len(pairs):
            similarity = equal.astype(np.float64)
        else:
            scorer, scale = VECTOR_SCORERS[c.method]
            raw = cpdist(col_l.tolist(), col_r.tolist(), scorer=scorer, workers=1)
            similarity = np.where(equal, 1.0, np.asarray(raw, dtype=np.float64) / scale)
        levels = np.full(len(pairs), len(c.thresholds), dtype=np.int64)
        for t in reversed(range(len(c.thresholds))):
            levels = np.where(similarity >= c.thresholds[t] - EPSILON, t, levels)
        out[:, k] = np.where(missing, -1, levels)
    return out


def weights_of(model: MatchModel, levels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Summed weights of a level matrix (missing levels add nothing)."""
    total = np.zeros(len(levels))
    for k, c in enumerate(model.comparisons):
        table = np.array(c.weights, dtype=np.float64)
        col = levels[:, k]
        total += np.where(col >= 0, table[np.maximum(col, 0)], 0.0)
    return total


def estimate(
    model: MatchModel,
    rows: Sequence[Sequence[int | None]] | npt.NDArray[np.int64],
    *,
    prior: float = 0.1,
    iterations: int = 40,
) -> tuple[MatchModel, float]:
    """Fit m and u by EM over the candidate pairs' agreement levels (no labels needed);
    returns the refitted model and the estimated share of matches among the pairs."""
    if len(rows) == 0:
        return model, prior
    if isinstance(rows, np.ndarray):
        raw = rows
    else:
        raw = np.array([[-1 if v is None else v for v in row] for row in rows], dtype=np.int64)
    # Pairs with the same agreement pattern have the same posterior: fit on the patterns,
    # weighted by how often each occurs (thousands instead of hundreds of thousands of rows).
    x, counts = np.unique(raw, axis=0, return_counts=True)
    n = counts.astype(np.float64)
    m = [np.array(c.m, dtype=float) for c in model.comparisons]
    u = [np.array(c.u, dtype=float) for c in model.comparisons]
    p = prior
    for _ in range(iterations):
        log_m = np.zeros(len(x))
        log_u = np.zeros(len(x))
        for k in range(len(m)):
            seen = x[:, k] >= 0
            idx = np.where(seen, x[:, k], 0)
            log_m += np.where(seen, np.log(m[k][idx]), 0.0)
            log_u += np.where(seen, np.log(u[k][idx]), 0.0)
        a = np.log(p) + log_m
        b = np.log1p(-p) + log_u
        g = 1.0 / (1.0 + np.exp(np.clip(b - a, -700, 700)))
        p = float(np.clip((g * n).sum() / n.sum(), 1e-6, 1 - 1e-6))
        for k in range(len(m)):
            seen = x[:, k] >= 0
            levels = len(m[k])
            gm = np.bincount(x[seen, k], weights=(g * n)[seen], minlength=levels) + 1e-6
            gu = np.bincount(x[seen, k], weights=((1 - g) * n)[seen], minlength=levels) + 1e-6
            m[k] = gm / gm.sum()
            u[k] = gu / gu.sum()
    return model.with_parameters([list(x) for x in m], [list(x) for x in u]), p


def one_to_one(scored: Iterable[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Greedy one-to-one assignment, best weight first (linking two clean files)."""
    used_l: set[int] = set()
    used_r: set[int] = set()
    kept = []
    for i, j, w in sorted(scored, key=lambda t: (-t[2], t[0], t[1])):
        if i in used_l or j in used_r:
            continue
        used_l.add(i)
        used_r.add(j)
        kept.append((i, j, w))
    return kept


# ---- the service's model ---------------------------------------------------------------

CUSTOMER_MODEL = MatchModel(
    comparisons=(
        Comparison(
            "first_name", "jaro_winkler", (0.95, 0.85), (0.88, 0.08, 0.04), (0.02, 0.04, 0.94)
        ),
        Comparison(
            "last_name", "jaro_winkler", (0.95, 0.85), (0.90, 0.06, 0.04), (0.005, 0.015, 0.98)
        ),
        Comparison(
            "company",
            "token_set",
            (0.95, 0.80),
            (0.80, 0.10, 0.10),
            (0.005, 0.01, 0.985),
            "company",
        ),
        Comparison(
            "billing_address", "token_sort", (0.90, 0.75), (0.70, 0.20, 0.10), (0.001, 0.01, 0.989)
        ),
        Comparison("country", "exact", (1.0,), (0.97, 0.03), (0.4, 0.6)),
    ),
    upper=14.0,
    lower=8.0,
    blocking=(
        (("last_name", "metaphone"), ("first_name", "first1")),
        (("first_name", "metaphone"), ("company", "word1")),
        (("last_name", "soundex"), ("company", "word1")),
    ),
    sort_keys=(("last_name", "first_name"),),
    window=3,
)
