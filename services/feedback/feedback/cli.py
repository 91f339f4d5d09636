"""The ``feedback`` command: ``feedback import FILE`` loads historical funnel events
(CloudEvents, one JSON object per line) into feedback's database, so a team starts with its
past numbers. Settings come from ``LEADPACT_*`` variables (database URL, contract)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="leadpact feedback: funnel history and tools.", no_args_is_help=True)

BATCH = 500


@app.callback()
def main() -> None:
    """leadpact feedback."""


@dataclass
class ImportResult:
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0
    invalid: list[str] = field(default_factory=list)


async def import_events(
    lines: list[str], database_url: str, contract_path: Path, *, recycle: bool = False
) -> ImportResult:
    """Validate and fold each event into the funnel store, once per event id (the same inbox
    as the live consumer, so an event later delivered by the bus is not counted twice)."""
    from feedback.app import EVENT_HANDLERS, SERVICE
    from feedback.handlers import project
    from leadpact.clock import SystemClock
    from leadpact.contract import ContractBook
    from leadpact.db import Database
    from leadpact.events import InvalidEvent, decode
    from leadpact.messaging import UnitOfWork
    from leadpact.migrations import upgrade_async

    contracts = ContractBook.load(contract_path)
    topics = {model.topic for model in EVENT_HANDLERS}
    consumer = f"leadpact-{SERVICE.name}"
    result = ImportResult()
    db = Database(database_url)  # makes the SQLite file's folder
    try:
        await upgrade_async(database_url, SERVICE.migrations)
        for start in range(0, len(lines), BATCH):
            async with UnitOfWork(db, SystemClock(), SERVICE.name) as uow:
                for number, line in enumerate(lines[start : start + BATCH], start=start + 1):
                    if not line.strip():
                        continue
                    try:
                        event = decode(line.encode())
                    except InvalidEvent as exc:
                        result.invalid.append(f"line {number}: {exc}")
                        continue
                    if event.topic not in topics:
                        result.skipped += 1
                        continue
                    if not await uow.claim(consumer, event.id):
                        result.duplicates += 1
                        continue
                    await project(event, uow.session, contracts, recycles=recycle)
                    result.imported += 1
                await uow.commit()
    finally:
        await db.dispose()
    return result


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="NDJSON file of CloudEvents; - for stdin")],
    recycle: Annotated[
        bool, typer.Option(help="Also schedule recycles for imported recyclable rejections")
    ] = False,
) -> None:
    """Load historical funnel events (CloudEvents as NDJSON) into feedback's database."""
    from leadpact.settings import Settings

    settings = Settings()
    if str(file) == "-":
        text = sys.stdin.read()
    elif not file.is_file():
        raise typer.BadParameter(f"{file}: no such file", param_hint="FILE")
    else:
        text = file.read_text(encoding="utf-8")
    result = asyncio.run(
        import_events(
            text.splitlines(), settings.database_url, settings.contract_path, recycle=recycle
        )
    )
    for problem in result.invalid[:100]:
        typer.echo(problem, err=True)
    typer.echo(
        f"imported {result.imported} event(s), {result.duplicates} duplicate(s), "
        f"{result.skipped} not funnel events, {len(result.invalid)} invalid"
    )
    if result.invalid:
        raise typer.Exit(1)
