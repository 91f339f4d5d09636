"""Writing and comparing benchmark results."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    better: Literal["higher", "lower", "none"] = "none"
    target: str | None = None


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "processor": platform.processor() or platform.machine(),
    }


def record(name: str, figures: dict[str, Figure], notes: str = "") -> Path:
    """Write ``bench/results/<name>.json`` and print the figures as one JSON line."""
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": {k: asdict(v) for k, v in figures.items()},
        "notes": notes,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"benchmark": name, **{k: v.value for k, v in figures.items()}}))
    return path


def load(name: str) -> dict[str, dict[str, object]]:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return {}
    figures: dict[str, dict[str, object]] = json.loads(path.read_text()).get("figures", {})
    return figures


def change(
    before: dict[str, object] | None, after: dict[str, object], tolerance: float = 0.10
) -> str:
    """``+12%`` / ``-3%`` and a REGRESSION mark when the figure moved the wrong way by more
    than ``tolerance``."""
    if not before:
        return "new"
    old, new = float(before["value"]), float(after["value"])  # type: ignore[arg-type]
    if old == 0:
        return "n/a"
    delta = (new - old) / abs(old)
    text = f"{delta:+.0%}"
    better = after.get("better")
    worse = (better == "higher" and delta < -tolerance) or (better == "lower" and delta > tolerance)
    return f"{text} REGRESSION" if worse else text
