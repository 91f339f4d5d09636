"""The ``intake`` command: API keys and replay of archived payloads.

It works on the database named by ``LEADPACT_DATABASE_URL`` (migrating it first), so it can
run beside a live intake: events it produces go to the outbox, which the service's relay
publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from intake import store
from intake.domain.apikeys import issue_key, key_hash, parse_scopes
from leadpact.service import ServiceContext, build_context
from leadpact.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="leadpact intake: API keys and replays.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the generic JSON API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _run(work: Callable[[ServiceContext], Awaitable[T]]) -> T:
    from intake.app import SERVICE
    from leadpact.migrations import upgrade_async

    async def main() -> T:
        settings = Settings()
        await upgrade_async(settings.database_url, SERVICE.migrations)
        ctx = build_context(SERVICE, settings)
        try:
            return await work(ctx)
        finally:
            await ctx.db.dispose()

    return asyncio.run(main())


@keys_app.command("create")
def keys_create(
    source: Annotated[str, typer.Option(help="The one source this key is for, e.g. hubspot")],
    scope: Annotated[list[str], typer.Option(help="leads:write, leads:read")] = ["leads:write"],  # noqa: B006
) -> None:
    """Create a key for SOURCE; prints it once (only its hash is kept)."""
    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from exc
    issued = issue_key()

    async def create(ctx: ServiceContext) -> None:
        async with ctx.uow() as uow:
            if await _source_taken(uow.session, source):
                raise typer.BadParameter(f"{source!r} already has a key", param_hint="--source")
            uow.session.add(
                store.ApiKey(
                    id=issued.key_id,
                    source=source,
                    key_hash=key_hash(issued.secret),
                    scopes=scopes,
                    created_at=ctx.clock.now(),
                )
            )
            await uow.commit()

    _run(create)
    typer.echo(issued.secret)


async def _source_taken(session: object, source: str) -> bool:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    query = select(store.ApiKey).where(store.ApiKey.source == source)
    return (await session.execute(query)).scalar_one_or_none() is not None


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke the key with KEY_ID (the part after ``lpk_``, shown by ``keys list``)."""

    async def revoke(ctx: ServiceContext) -> bool:
        async with ctx.uow() as uow:
            row = await store.api_key(uow.session, key_id)
            if row is None:
                return False
            row.revoked_at = row.revoked_at or ctx.clock.now()
            await uow.commit()
            return True

    if not _run(revoke):
        typer.echo(f"no key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def keys_list() -> None:
    """Every key: id, source, scopes, created, revoked."""

    async def listing(ctx: ServiceContext) -> list[store.ApiKey]:
        async with ctx.db.session() as session:
            return await store.api_keys(session)

    for row in _run(listing):
        revoked = row.revoked_at.isoformat() if row.revoked_at else "active"
        typer.echo(
            f"{row.id}\t{row.source}\t{','.join(row.scopes)}\t{row.created_at.isoformat()}\t{revoked}"
        )


@app.command("replay")
def replay_command(
    channel: Annotated[
        str | None, typer.Option(help="api, google_ads, typeform, website, meta")
    ] = None,
    raw_id: Annotated[list[str], typer.Option("--id", help="Archived payload id(s)")] = [],  # noqa: B006
    outcome: Annotated[list[str], typer.Option(help="Outcomes to replay")] = ["rejected"],  # noqa: B006
) -> None:
    """Run archived payloads again through today's mapping (by default every rejected one).
    Platform payloads keep their natural key, so a replay never makes a second lead."""
    from intake.replay import replay
    from intake.runtime import runtime

    async def run(ctx: ServiceContext) -> list[tuple[str, str]]:
        parts = runtime(ctx)
        try:
            async with ctx.db.session() as session:
                rows = await store.replayable(session, channel, raw_id, outcome)
            return [(row.id, await replay(parts.reception, row)) for row in rows]
        finally:
            await parts.stop()

    results = _run(run)
    for rid, result in results:
        typer.echo(f"{rid}\t{result}")
    typer.echo(f"replayed {len(results)}")


def main() -> None:
    app()
