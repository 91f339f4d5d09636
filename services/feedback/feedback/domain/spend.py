"""Ad spend as posted (JSON) or imported (CSV), validated row by row."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from feedback.domain.activities import refuse_nul

CSV_COLUMNS = ("day", "source", "campaign", "amount", "currency")
MAX_ROWS = 100_000


class SpendItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    day: date
    source: str = Field("", max_length=100, description="ad platform, as in the lead's source")
    campaign: str = Field("", max_length=200)
    amount: Decimal = Field(ge=0, max_digits=14, decimal_places=2)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")

    _no_nul = field_validator("*")(refuse_nul)


class SpendBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[SpendItem] = Field(min_length=1, max_length=10_000)


@dataclass(frozen=True)
class CsvError:
    line: int
    column: str
    message: str


def parse_csv(text: str) -> tuple[list[SpendItem], list[CsvError]]:
    """Rows of a CSV with the header ``day,source,campaign,amount[,currency]``; every bad
    cell is reported with its line and column."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _parse(reader)
    except csv.Error as exc:  # not CSV at all: a stray carriage return, a huge field
        return [], [CsvError(max(reader.line_num, 1), "file", str(exc))]


def _parse(reader: csv.DictReader[str]) -> tuple[list[SpendItem], list[CsvError]]:
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("day", "amount") if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        problems = [f"missing column {c!r}" for c in missing]
        problems += [f"unknown column {c!r}" for c in unknown]
        return [], [CsvError(1, "header", "; ".join(problems) + f"; expected {CSV_COLUMNS}")]
    items: list[SpendItem] = []
    errors: list[CsvError] = []
    for count, raw in enumerate(reader, start=1):
        number = reader.line_num  # the file's line (blank lines are skipped, not counted)
        if count > MAX_ROWS:
            errors.append(CsvError(number, "file", f"more than {MAX_ROWS} rows"))
            break
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        if not row.get("currency"):
            row.pop("currency", None)
        try:
            items.append(SpendItem.model_validate(row))
        except ValidationError as exc:
            for err in exc.errors():
                column = ".".join(str(p) for p in err["loc"]) or "row"
                errors.append(CsvError(number, column, err["msg"]))
    if not items and not errors:
        errors.append(CsvError(1, "file", "no spend rows"))
    return items, errors
