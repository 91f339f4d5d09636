"""``scoring`` command line: train a model from a CRM export, predict with it, and manage
the running service's model registry."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from scoring.model.calibrated import CalibratedModel, fit
from scoring.model.evaluation import cross_validate
from scoring.model.table import read_table
from scoring.model.training_set import training_set

app = typer.Typer(help="leadpact scoring: train, predict, manage models.", no_args_is_help=True)
models = typer.Typer(help="The running service's model registry.", no_args_is_help=True)
app.add_typer(models, name="models")

Url = Annotated[str, typer.Option(help="scoring service base URL")]


@app.command()
def train(
    csv_path: Annotated[Path, typer.Option("--csv", exists=True, dir_okay=False)],
    target: Annotated[str, typer.Option(help="column holding the outcome")],
    out: Annotated[Path, typer.Option(help="model directory to write")],
    positive: Annotated[str | None, typer.Option(help="target value meaning success")] = None,
    drop: Annotated[str, typer.Option(help="columns to leave out, comma separated")] = "",
    sep: Annotated[str | None, typer.Option(help="separator; guessed when omitted")] = None,
    time_column: Annotated[str | None, typer.Option("--time", help="order rows by")] = None,
    folds: Annotated[int, typer.Option(min=2)] = 5,
) -> None:
    """Cross-validate, train on everything, write the model directory, print one JSON line."""
    try:
        data = training_set(
            read_table(csv_path, sep),
            target,
            positive,
            [c.strip() for c in drop.split(",") if c.strip()],
            time_column,
        )
        metrics = cross_validate(data.schema, data.x, data.y, folds)
        started = time.perf_counter()
        model = fit(data.schema, data.x, data.y)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    model.metrics = metrics
    model.version = f"csv-{csv_path.stem}-{int(time.time())}"
    model.meta = {"source": str(csv_path), "target": target}
    model.save(out)
    typer.echo(json.dumps(metrics))


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Option("--model", exists=True, file_okay=False)],
    csv_path: Annotated[Path, typer.Option("--csv", exists=True, dir_okay=False)],
    sep: Annotated[str | None, typer.Option()] = None,
    out: Annotated[Path | None, typer.Option(help="CSV to write; stdout when omitted")] = None,
) -> None:
    """Probability and reasons for every row of the CSV (extra columns are ignored)."""
    model = CalibratedModel.load(model_dir)
    table = read_table(csv_path, sep)
    x = model.schema.encode(table.rows)
    handle = out.open("w", newline="") if out else sys.stdout
    writer = csv.writer(handle)
    writer.writerow(["row", "probability", "reasons"])
    for i in range(len(table.rows)):
        probability, reasons = model.explain(x[i : i + 1])
        writer.writerow([i + 1, f"{probability:.4f}", " | ".join(reasons)])
    if out:
        handle.close()


def _key() -> dict[str, str]:
    """The service's management routes need a key (``models:read``/``models:admin``) when it
    requires API keys: taken from LEADPACT_API_KEY, never from the command line (history)."""
    key = os.environ.get("LEADPACT_API_KEY", "")
    return {"X-API-Key": key} if key else {}


def _call(method: str, url: str) -> None:
    answer = httpx.request(method, url, headers=_key(), timeout=30)
    typer.echo(json.dumps(answer.json(), indent=2))
    if answer.status_code >= 400:
        raise typer.Exit(1)


@models.command("list")
def list_models(url: Url = "http://127.0.0.1:8002") -> None:
    _call("GET", f"{url}/v1/models")


@models.command()
def promote(version: str, url: Url = "http://127.0.0.1:8002") -> None:
    """Make ``version`` the champion."""
    _call("POST", f"{url}/v1/models/{version}/promote")


@models.command()
def rollback(url: Url = "http://127.0.0.1:8002") -> None:
    """Bring back the champion before the current one."""
    _call("POST", f"{url}/v1/models/rollback")


@models.command()
def register(
    model_dir: Annotated[Path, typer.Option("--model", exists=True, file_okay=False)],
    url: Url = "http://127.0.0.1:8002",
) -> None:
    """Upload a model directory written by ``scoring train`` (as a challenger)."""
    body = {
        "manifest": json.loads((model_dir / "model.json").read_text()),
        "booster": (model_dir / "booster.txt").read_text(),
    }
    answer = httpx.post(f"{url}/v1/models", json=body, headers=_key(), timeout=60)
    typer.echo(json.dumps(answer.json(), indent=2))
    if answer.status_code >= 400:
        raise typer.Exit(1)


def main() -> None:
    app()
