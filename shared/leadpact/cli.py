"""The ``leadpact`` command: run the embedded system, serve one service, check a contract,
manage migrations and dead-letter topics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="leadpact: the marketing–sales SLA, enforced.", no_args_is_help=True)
migrations_app = typer.Typer(help="Database migrations of a service.")
app.add_typer(migrations_app, name="migrations")
dlq_app = typer.Typer(help="Dead-letter topics (Kafka): list and replay parked events.")
app.add_typer(dlq_app, name="dlq")
keys_app = typer.Typer(help="API keys of the management routes (LEADPACT_API_KEYS).")
app.add_typer(keys_app, name="keys")


def _bootstrap() -> tuple[str, bool]:
    from leadpact.settings import Settings

    settings = Settings()
    if not settings.bus_url.startswith("kafka://"):
        raise typer.BadParameter("LEADPACT_BUS_URL must be kafka://host:port for dlq commands")
    return settings.bus_url.removeprefix("kafka://"), settings.kafka_enable_idempotence


@dlq_app.command("list")
def dlq_list(topic: str) -> None:
    """Print each event parked in TOPIC.dlq with its error, one JSON line each."""
    import json

    from leadpact.dlq import list_parked

    bootstrap, _ = _bootstrap()
    for parked in asyncio.run(list_parked(bootstrap, topic)):
        typer.echo(
            json.dumps(
                {
                    "offset": parked.offset,
                    "key": parked.key,
                    "error": parked.error,
                    "origin": parked.origin,
                    "value": parked.value.decode(errors="replace"),
                }
            )
        )


@dlq_app.command("replay")
def dlq_replay(topic: str) -> None:
    """Publish the events parked in TOPIC.dlq back to TOPIC, each once."""
    from leadpact.dlq import replay

    bootstrap, idempotence = _bootstrap()
    count = asyncio.run(replay(bootstrap, topic, enable_idempotence=idempotence))
    typer.echo(f"replayed {count} event(s) from {topic}.dlq")


@app.command()
def run(
    var_dir: Annotated[Path, typer.Option(help="Where the SQLite files go")] = Path("var"),
    host: str = "127.0.0.1",
) -> None:
    """Start all five services in one process: in-memory bus, SQLite under VAR_DIR."""
    from leadpact.embedded import run_embedded

    asyncio.run(run_embedded(var_dir=var_dir, host=host))


@app.command()
def serve(service: str) -> None:
    """Start one service (distributed mode); settings come from LEADPACT_* variables."""
    from leadpact.embedded import load_services
    from leadpact.service import serve as serve_one

    services = load_services()
    if service not in services:
        raise typer.BadParameter(f"unknown service {service!r}; one of {sorted(services)}")
    serve_one(services[service])


@app.command("contract-check")
def contract_check(path: Path) -> None:
    """Validate a contract file (or folder of versions); print each version or the errors."""
    from leadpact.contract import ContractBook, ContractError

    try:
        book = ContractBook.load(path)
    except ContractError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    for version in book.versions:
        typer.echo(f"ok {version}")


@migrations_app.command("new")
def migrations_new(service: str, message: Annotated[str, typer.Option("-m")]) -> None:
    """Autogenerate a migration for SERVICE from its models."""
    from leadpact.embedded import load_services
    from leadpact.migrations import new_revision

    new_revision(load_services()[service].migrations, message)


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Option(help="Who holds the key, e.g. ops or bi")],
    scope: Annotated[list[str], typer.Option(help="A scope, e.g. models:admin; repeatable")],
) -> None:
    """Print a fresh key (shown once, never stored) and the JSON entry to add to
    LEADPACT_API_KEYS; the services keep only its SHA-256."""
    from leadpact.apikeys import new_key

    secret, entry = new_key(name, scope)
    typer.echo(f"key (give it to {name}; it is not shown again): {secret}")
    typer.echo(f"entry for LEADPACT_API_KEYS: {entry.model_dump_json()}")


def main() -> None:
    app()
