"""Alembic, run per service: each service keeps its own migrations folder and database.

A service's ``migrations/env.py`` is two lines: import its metadata and call :func:`run_env`.
At start-up the service calls :func:`upgrade`, so a fresh database is ready without a step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(database_url: str, script_location: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


# Any fixed number: PostgreSQL advisory locks are per database, and each service has its own.
UPGRADE_LOCK_KEY = 7_340_117

# Alembic keeps the running migration in module-level state (``alembic.context``), so two
# upgrades in one process at once (five services starting embedded) must take turns.
_ONE_AT_A_TIME = threading.Lock()


def upgrade(database_url: str, script_location: Path, revision: str = "head") -> None:
    """Bring the database to ``revision`` (blocking; runs its own event loop)."""
    with _ONE_AT_A_TIME:
        command.upgrade(alembic_config(database_url, script_location), revision)


async def upgrade_async(database_url: str, script_location: Path) -> None:
    await asyncio.to_thread(upgrade, database_url, script_location)


def _made_on(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object``: compare only what the models create on ``dialect``. An
    index made on one dialect only (``Index(...).ddl_if(dialect="postgresql")``, e.g.
    crm-sync's partial index of live customers) is not missing on another. SQLAlchemy keeps
    the condition in the private ``_ddl_if``; without it, everything is compared."""

    def include_object(obj: object, *_: object) -> bool:
        made_if = getattr(obj, "_ddl_if", None)
        only_on = getattr(made_if, "dialect", None)
        return only_on is None or only_on == dialect

    return include_object


def run_env(target_metadata: Sequence[MetaData]) -> None:
    """Body of every service's ``env.py``: offline SQL or an online async upgrade."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by alembic_config()"
    opts: dict[str, Any] = {
        "target_metadata": list(target_metadata),
        "render_as_batch": url.startswith("sqlite"),
        "include_object": _made_on(make_url(url).get_backend_name()),
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **opts)
        with context.begin_transaction():
            context.run_migrations()
        return

    def run(conn: Connection) -> None:
        context.configure(connection=conn, **opts)
        with context.begin_transaction():
            context.run_migrations()

    async def online() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two replicas starting at once would both create the tables; the second
                # waits here until the first commits, then finds the schema current.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY}
                )
            await conn.run_sync(run)
        await engine.dispose()

    asyncio.run(online())


def new_revision(script_location: Path, message: str) -> None:
    """Autogenerate a migration for a service from the difference between its models and a
    scratch SQLite database brought to head (used by ``leadpact migrations new``)."""
    import shutil
    import tempfile

    template = Path(__file__).parent / "migration_template" / "script.py.mako"
    if not (script_location / "script.py.mako").exists():
        shutil.copy(template, script_location / "script.py.mako")
    (script_location / "versions").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(url, script_location)
        command.revision(alembic_config(url, script_location), message=message, autogenerate=True)


def create_messaging_tables() -> None:
    """The outbox and inbox every service has, for its first revision to call.

    Frozen on purpose: a migration must mean the same thing forever, so a change to these
    tables is a new function here and a new revision in each service, never an edit."""
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )


def drop_messaging_tables() -> None:
    op.drop_table("outbox")
    op.drop_table("inbox")
