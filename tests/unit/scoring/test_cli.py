"""``scoring train`` and ``scoring predict`` on a small real CSV written by the test: ``;``
separated, with missing values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scoring.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "bank-marketing-sample.csv"


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with SAMPLE.open() as handle:
        rows = list(csv.reader(handle))
    header, picked = rows[0], rows[1:]
    for row in picked[::7]:  # blank some cells: exports have holes
        row[header.index("job")] = ""
        row[header.index("age")] = "NA"
    path = tmp_path_factory.mktemp("csv") / "crm-export.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerows([header, *picked])
    return path


def test_train_prints_metrics_and_predict_gives_reasons(small_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "train",
            "--csv",
            str(small_csv),
            "--target",
            "output",
            "--drop",
            "duration",
            "--out",
            str(out),
            "--folds",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert set(metrics) >= {"auc", "pr_auc", "log_loss", "brier", "n"}
    assert metrics["n"] == 2000 and metrics["auc"] > 0.6
    assert (out / "model.json").exists() and (out / "booster.txt").exists()

    predicted = runner.invoke(app, ["predict", "--model", str(out), "--csv", str(small_csv)])
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.output.strip().splitlines()
    assert lines[0] == "row,probability,reasons" and len(lines) == 2001
    assert any(":" in line.split(",", 2)[2] for line in lines[1:])


def test_train_names_a_wrong_target(small_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--csv", str(small_csv), "--target", "nope", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--target" in result.output
