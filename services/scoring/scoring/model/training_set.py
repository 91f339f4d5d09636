"""A labelled table turned into (schema, X, y) for training or scoring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scoring.model.calibrated import Labels
from scoring.model.schema import FeatureSchema, Matrix, infer_schema
from scoring.model.table import Row, Table

POSITIVE_WORDS = ("yes", "true", "1", "won", "y", "positive", "converted")


@dataclass(frozen=True)
class TrainingSet:
    schema: FeatureSchema
    x: Matrix
    y: Labels


def positive_value(values: Sequence[str | None], given: str | None) -> str:
    """The target value that means success: as given, else the usual words."""
    seen = {v.lower() for v in values if v is not None}
    if given is not None:
        if given.lower() not in seen:
            raise ValueError(f"--positive: {given!r} never occurs in the target column")
        return given.lower()
    for word in POSITIVE_WORDS:
        if word in seen:
            return word
    raise ValueError(f"--positive: cannot tell the positive value among {sorted(seen)[:10]}")


def training_set(
    table: Table,
    target: str,
    positive: str | None = None,
    drop: Sequence[str] = (),
    order_by: str | None = None,
) -> TrainingSet:
    """Rows without a target are left out; rows are put in ``order_by`` order (time) when
    given, else kept in file order, which exports usually are."""
    if target not in table.columns:
        raise ValueError(f"--target: no column {target!r} (columns: {', '.join(table.columns)})")
    unknown = [c for c in drop if c not in table.columns]
    if unknown:
        raise ValueError(f"--drop: no column(s) {unknown}")
    rows: list[Row] = [r for r in table.rows if r.get(target) is not None]
    if order_by is not None:
        if order_by not in table.columns:
            raise ValueError(f"--time: no column {order_by!r}")
        rows.sort(key=lambda r: r.get(order_by) or "")
    yes = positive_value([r[target] for r in rows], positive)
    names = [c for c in table.columns if c not in {target, order_by, *drop}]
    schema = infer_schema(rows, names)
    y = np.array([1 if (r[target] or "").lower() == yes else 0 for r in rows], dtype=np.int_)
    return TrainingSet(schema, schema.encode(rows), y)
