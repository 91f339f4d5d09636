"""Features, the calibrated LightGBM model and its reasons, on synthetic leads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from scoring.domain.rules import Occurrence
from scoring.features import activity_features, email_domain_type, title_seniority
from scoring.handlers import rejection_label
from scoring.model.calibrated import CalibratedModel, fit
from scoring.model.schema import infer_schema
from scoring.model.table import Table
from scoring.model.training_set import training_set
from scoring.settings import ScoringSettings

NOW = datetime(2026, 11, 2, tzinfo=UTC)


def synthetic(n: int = 1500, seed: int = 3) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        seniority = rng.choice(["c_level", "director", "manager", "staff"])
        size = float(rng.integers(1, 1000))
        logit = (
            -2.0
            + {"c_level": 2.0, "director": 1.2, "manager": 0.2, "staff": -1.0}[seniority]
            + size / 500
        )
        won = int(rng.random() < 1 / (1 + np.exp(-logit)))
        rows.append({"title_seniority": seniority, "company_size": size, "won": won})
    return rows


def test_text_derived_features() -> None:
    assert title_seniority("Chief Revenue Officer") == "c_level"
    assert title_seniority("VP Sales") == "vp"
    assert title_seniority("Head of Operations") == "director"
    assert title_seniority("Accountant") == "staff"
    assert title_seniority(None) is None
    assert email_domain_type("GMAIL.com", ["gmail.com"]) == "free"
    assert email_domain_type("acme.example", ["gmail.com"]) == "business"


def test_activity_counts_decay_and_recency() -> None:
    seen = [Occurrence("webinar", NOW - timedelta(days=14)), Occurrence("webinar", NOW)]
    out = activity_features(seen, ["webinar", "email_opened"], timedelta(days=14), NOW)
    assert out["activity:webinar"] == pytest.approx(1.5)
    assert out["days_since:webinar"] == 0
    assert out["activity:email_opened"] == 0 and "days_since:email_opened" not in out


def test_model_learns_calibrates_explains_and_round_trips(tmp_path: Path) -> None:
    rows = synthetic()
    schema = infer_schema(rows, ["title_seniority", "company_size"])
    assert [f.kind for f in schema.features] == ["categorical", "numeric"]
    y = np.array([r["won"] for r in rows], dtype=np.int_)
    model = fit(schema, schema.encode(rows), y)
    boss = schema.encode([{"title_seniority": "c_level", "company_size": 900}])
    clerk = schema.encode([{"title_seniority": "staff", "company_size": 5}])
    p_boss, reasons = model.explain(boss)
    assert p_boss > model.predict(clerk)[0] + 0.3
    assert reasons[0].startswith("+") and "title_seniority: c_level" in reasons[0]
    assert any(r.startswith("-") for r in model.explain(clerk)[1])
    model.save(tmp_path / "m")
    again = CalibratedModel.load(tmp_path / "m")
    assert again.predict(boss)[0] == pytest.approx(model.predict(boss)[0])


def test_a_lead_is_explained_the_same_alone_and_in_a_batch() -> None:
    """A consumer batch's leads go through the model in one call: each must get exactly
    the probability and reasons it gets alone."""
    rows = synthetic(600)
    schema = infer_schema(rows, ["title_seniority", "company_size"])
    model = fit(schema, schema.encode(rows), np.array([r["won"] for r in rows], dtype=np.int_))
    leads = schema.encode([*rows[:15], {}])
    together = model.explain_many(leads)
    assert together == [model.explain(leads[i : i + 1]) for i in range(len(leads))]
    assert len({p for p, _ in together}) > 3 and any(reasons for _, reasons in together)


def test_unseen_and_missing_values_are_scored() -> None:
    rows = synthetic(300)
    schema = infer_schema(rows, ["title_seniority", "company_size"])
    encoded = schema.encode([{"title_seniority": "astronaut"}, {}])
    assert np.isnan(encoded).all()


def test_training_set_finds_the_positive_value_and_names_bad_columns() -> None:
    table = Table(["a", "out"], [{"a": "1", "out": "no"}, {"a": "2", "out": "yes"}])
    assert training_set(table, "out").y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="--target"):
        training_set(table, "missing")
    with pytest.raises(ValueError, match="--positive"):
        training_set(table, "out", positive="maybe")
    with pytest.raises(ValueError, match="--drop"):
        training_set(table, "out", drop=["zzz"])


def test_rejection_reasons_map_to_labels() -> None:
    settings = ScoringSettings()
    assert rejection_label("no_authority", settings) == 0
    assert rejection_label("no_response", settings) is None
