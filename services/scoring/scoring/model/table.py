"""Reading any reasonable CSV (``,`` or ``;``, mixed types, missing values) into rows, and
guessing which columns are numbers and which are categories."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})

Row = dict[str, str | None]


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[Row]


def _cell(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return None if stripped.lower() in MISSING else stripped


def sniff_separator(sample: str) -> str:
    """``;`` when the header has more of them than commas (European CRM exports)."""
    header = sample.splitlines()[0] if sample else ""
    return ";" if header.count(";") > header.count(",") else ","


def read_table(path: Path, sep: str | None = None) -> Table:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=sep or sniff_separator(text[:4096]))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not columns:
        raise ValueError(f"{path}: no header row")
    rows = [{col.strip(): _cell(v) for col, v in raw.items() if col is not None} for raw in reader]
    return Table(columns, rows)


def as_number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", ".")) if str(value).strip() else None
    except ValueError:
        return None


def looks_numeric(values: Iterable[object]) -> bool:
    """A column is numeric when every present value parses as a number."""
    seen = False
    for value in values:
        if value is None:
            continue
        if as_number(value) is None:
            return False
        seen = True
    return seen


def column(rows: Sequence[Row], name: str) -> list[str | None]:
    return [row.get(name) for row in rows]
