"""Which features a model reads and how each is encoded; saved with the model so that
training and scoring encode a lead the same way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from scoring.model.table import as_number, looks_numeric

Kind = Literal["numeric", "categorical"]
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Kind
    # Categorical values seen in training, most frequent first; the index is LightGBM's code.
    categories: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureSchema:
    features: list[FeatureSpec]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind == "categorical"]

    def encode(self, records: Sequence[Mapping[str, Any]]) -> Matrix:
        """One row per record; missing or unseen values become NaN (LightGBM's missing)."""
        matrix = np.full((len(records), len(self.features)), np.nan)
        for j, spec in enumerate(self.features):
            codes = {c: i for i, c in enumerate(spec.categories)}
            for i, record in enumerate(records):
                value = record.get(spec.name)
                if value is None:
                    continue
                if spec.kind == "numeric":
                    number = as_number(value)
                    matrix[i, j] = np.nan if number is None else number
                else:
                    code = codes.get(str(value).strip().lower())
                    matrix[i, j] = np.nan if code is None else code
        return matrix

    def describe(self, j: int, value: float) -> str:
        """A feature's value as people read it (the category, not its code)."""
        spec = self.features[j]
        if np.isnan(value):
            return "missing"
        if spec.kind == "categorical":
            return spec.categories[int(value)]
        return f"{value:g}"

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.features]

    @classmethod
    def from_json(cls, doc: Sequence[Mapping[str, Any]]) -> FeatureSchema:
        return cls([FeatureSpec(d["name"], d["kind"], list(d.get("categories", []))) for d in doc])


def infer_schema(
    records: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    kinds: Mapping[str, Kind] | None = None,
    max_categories: int = 200,
) -> FeatureSchema:
    """Numbers stay numbers; everything else is a category, keeping the ``max_categories``
    most frequent values (rarer ones read as missing, which LightGBM handles)."""
    specs: list[FeatureSpec] = []
    for name in names:
        values = [r.get(name) for r in records]
        kind: Kind = (kinds or {}).get(name) or (
            "numeric" if looks_numeric(values) else "categorical"
        )
        if kind == "numeric":
            specs.append(FeatureSpec(name, "numeric"))
            continue
        counts = Counter(str(v).strip().lower() for v in values if v is not None)
        specs.append(
            FeatureSpec(name, "categorical", [c for c, _ in counts.most_common(max_categories)])
        )
    return FeatureSchema(specs)
