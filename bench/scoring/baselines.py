"""The models LightGBM is compared with: logistic regression, the naive-Bayes frequency model
(Odoo's predictive lead scoring) and contract-style points alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from leadpact.contract import FieldRule
from scoring.domain.rules import field_rule_holds
from scoring.model.schema import FeatureSchema

F = npt.NDArray[np.float64]
Y = npt.NDArray[np.int_]


def logistic(schema: FeatureSchema) -> Pipeline:
    categorical = schema.categorical_indices
    numeric = [i for i in range(len(schema.features)) if i not in categorical]
    columns = ColumnTransformer(
        [
            (
                "categories",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=2000, C=1.0))


class FrequencyBayes:
    """Naive Bayes over value frequencies, Laplace-smoothed; numbers are cut into deciles
    (Odoo's model only counts field values per won/lost lead)."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema

    def _bins(self, x: F) -> npt.NDArray[np.int_]:
        out = np.zeros(x.shape, dtype=np.int_)
        for j, spec in enumerate(self.schema.features):
            column = x[:, j]
            if spec.kind == "numeric":
                out[:, j] = np.searchsorted(self.edges[j], column)
            else:
                out[:, j] = column.astype(np.int_, copy=False) + 1
            out[np.isnan(column), j] = -1  # missing is a value of its own
        return out

    def fit(self, x: F, y: Y) -> FrequencyBayes:
        self.edges = {
            j: np.unique(np.nanquantile(x[:, j], np.linspace(0.1, 0.9, 9)))
            for j, s in enumerate(self.schema.features)
            if s.kind == "numeric"
        }
        bins = self._bins(x)
        self.prior = np.log([(y == 0).mean(), (y == 1).mean()])
        self.tables: list[dict[int, F]] = []
        for j in range(bins.shape[1]):
            values = np.unique(bins[:, j])
            table = {}
            for v in values:
                hit = bins[:, j] == v
                table[int(v)] = np.log(
                    [
                        (hit[y == 0].sum() + 1) / ((y == 0).sum() + len(values)),
                        (hit[y == 1].sum() + 1) / ((y == 1).sum() + len(values)),
                    ]
                )
            self.tables.append(table)
        return self

    def predict(self, x: F) -> F:
        bins = self._bins(x)
        logp = np.tile(self.prior, (len(x), 1))
        for j, table in enumerate(self.tables):
            unseen = np.zeros(2)
            logp += np.array([table.get(int(v), unseen) for v in bins[:, j]])
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return np.asarray(p[:, 1] / p.sum(axis=1), dtype=np.float64)


# A marketer's rubric for the bank data, written the way a contract's mql.points are.
BANK_POINTS = [
    FieldRule(field="contact", equals="cellular", points=10),
    FieldRule(field="pdays", lte=30, points=20),
    FieldRule(field="previous", gte=1, points=10),
    FieldRule.model_validate({"field": "job", "in": ["student", "retired"], "points": 10}),
    FieldRule(field="age", gte=60, points=5),
    FieldRule(field="campaign", lte=2, points=5),
    FieldRule(field="default", equals="no", points=5),
]


def points_of(records: list[dict[str, str | None]]) -> npt.NDArray[np.int_]:
    return np.array(
        [sum(r.points for r in BANK_POINTS if field_rule_holds(r, rec, {})) for rec in records],
        dtype=np.int_,
    )


class PointsOnly:
    """Points, turned into a probability by the won rate of each points total in training
    (ranking, hence AUC, is the points' own)."""

    def fit(self, points: npt.NDArray[np.int_], y: Y) -> PointsOnly:
        self.rate = {
            int(p): (y[points == p].sum() + 1) / ((points == p).sum() + 2)
            for p in np.unique(points)
        }
        self.base = float(y.mean())
        return self

    def predict(self, points: npt.NDArray[np.int_]) -> F:
        return np.array([self.rate.get(int(p), self.base) for p in points], dtype=np.float64)
