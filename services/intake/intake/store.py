"""Intake's own tables: leads, idempotency keys, raw submissions, Meta notifications, API
keys; and the queries on them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.schema import Table

from intake.domain.erasure import (
    ERASED_BODY,
    ERASED_OUTCOME,
    erased_event_data,
    erased_lead_values,
    mentions,
)
from leadpact.db import UtcDateTime
from leadpact.messaging import rewrite_pending_events


class Base(DeclarativeBase):
    pass


class LeadRow(Base):
    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    # sha256 of the normalised email: how a privacy.erased request (which carries no email)
    # finds every lead of the person, test leads and unannounced ones included.
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    company_size: Mapped[int | None] = mapped_column(Integer)
    industry: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    consent: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # A platform's own id for the submission ("meta:<leadgen_id>"): its retries are one lead.
    external_ref: Mapped[str | None] = mapped_column(String(300), unique=True)
    # Platform test leads (Google's is_test) are kept apart: stored, never announced.
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    existing_customer: Mapped[bool | None] = mapped_column(Boolean)
    # "done", "pending" (crm-sync was unreachable) or "off"; pending rows are retried.
    customer_check: Mapped[str] = mapped_column(String(16), default="done", index=True)
    customer_check_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    raw_id: Mapped[str | None] = mapped_column(String(36))
    # When the person's fields were blanked on request (privacy.erased).
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_code: Mapped[int] = mapped_column(Integer, default=202)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RawSubmission(Base):
    """Every payload a lead route accepted for reading, byte for byte, with its outcome:
    after a mapping fix ``intake replay`` runs the failed ones again."""

    __tablename__ = "raw_submissions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), index=True)
    content_type: Mapped[str] = mapped_column(String(200))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # accepted, resubmitted, duplicate, test, rejected, spam, pending (Meta: to fetch)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    lead_id: Mapped[str | None] = mapped_column(String(36))
    api_key_id: Mapped[str | None] = mapped_column(String(32))


class MetaNotification(Base):
    """A Meta ``leadgen`` id to fetch from the Graph API; stored before any fetch."""

    __tablename__ = "meta_notifications"

    leadgen_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    form_id: Mapped[str | None] = mapped_column(String(64))
    page_id: Mapped[str | None] = mapped_column(String(64))
    ad_id: Mapped[str | None] = mapped_column(String(64))
    raw_id: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    lead_id: Mapped[str | None] = mapped_column(String(36))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


async def insert_together(
    driver: Any, dialect: Dialect, rows: Mapping[Table, Sequence[Mapping[str, Any]]]
) -> None:
    """Insert rows into several tables with one PostgreSQL statement: one round trip, and
    atomic by itself (data-modifying CTEs, each inserting ``unnest`` of one array per
    column). Values go through each column type's own bind processing, as a Core INSERT
    would; the statement text depends only on the tables and columns, never on how many
    rows, so it stays prepared.

    ``driver`` is the asyncpg connection itself: this runs once per group commit, and
    SQLAlchemy's execution of a statement with one parameter per column (cache key,
    parameter processing, result wrapping) cost 30 % of the CPU of the write (measured)."""
    present = [(table, table_rows) for table, table_rows in rows.items() if table_rows]
    if not present:
        return
    shape = tuple((table, tuple(table_rows[0])) for table, table_rows in present)
    if shape not in _STATEMENTS:
        _STATEMENTS[shape] = _insert_together_sql(shape, dialect)
    arrays: list[list[Any]] = []
    for table, table_rows in present:
        for name in table_rows[0]:
            process = _bind_processor(table.c[name].type, dialect)
            values = [row[name] for row in table_rows]
            arrays.append([process(v) for v in values] if process else values)
    await raw_call(driver.execute, _STATEMENTS[shape], *arrays)


Shape = tuple[tuple[Table, tuple[str, ...]], ...]
_STATEMENTS: dict[Shape, str] = {}


def _insert_together_sql(shape: Shape, dialect: Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    parts: list[str] = []
    n = 0
    for t, (table, names) in enumerate(shape):
        casts = []
        for name in names:
            n += 1
            casts.append(f"CAST(${n} AS {table.c[name].type.compile(dialect)}[])")
        columns = ", ".join(quote(name) for name in names)
        parts.append(
            f"t{t} AS (INSERT INTO {quote(table.name)} ({columns}) "
            f"SELECT * FROM unnest({', '.join(casts)}))"
        )
    return f"WITH {', '.join(parts)} SELECT 1"


async def raw_call(method: Any, sql: str, *args: Any) -> Any:
    """``method(sql, *args)`` on the asyncpg connection; a constraint violation is raised
    as SQLAlchemy's ``IntegrityError``, as when the statement goes through SQLAlchemy
    (callers tell a concurrent duplicate by it)."""
    try:
        return await method(sql, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql, None, exc) from exc


# Only the two indexed conditions: a prepared statement soon runs a generic plan (made
# without the values). With ``created_at >= $2 ... ORDER BY created_at`` in it as well,
# PostgreSQL's CPU per lead grew with the table, faster than with the ORM's query (a plan
# through the created_at index is the likely cause; not confirmed). This shape has one
# sensible plan, the two indexes; the window, test leads and the order are applied to
# the few rows found.
_PEOPLE = (
    "SELECT email, phone, id, created_at, is_test FROM leads "
    "WHERE email = ANY($1::varchar[]) OR phone = ANY($1::varchar[])"
)
_LEADS_OF_REFS = "SELECT external_ref, id FROM leads WHERE external_ref = ANY($1::varchar[])"
_KEYS_OF_REFS = "SELECT key, lead_id FROM idempotency_keys WHERE key = ANY($1::varchar[])"


async def recent_leads_of_people_raw(
    driver: Any, people: set[str], since: datetime
) -> list[tuple[str, str]]:
    """``recent_leads_of_people`` on the asyncpg connection (PostgreSQL, group commit):
    one prepared statement whatever the number of people, no SQLAlchemy statement
    built, cached or compiled per batch (that cost ~15x the query's own CPU; measured)."""
    if not people:
        return []
    rows = await raw_call(driver.fetch, _PEOPLE, list(people))
    recent = sorted(
        (row for row in rows if row["is_test"] is False and row["created_at"] >= since),
        key=lambda row: row["created_at"],
    )
    found: list[tuple[str, str]] = []
    for row in recent:
        found.extend((who, row["id"]) for who in (row["email"], row["phone"]) if who in people)
    return found


async def leads_of_refs_raw(driver: Any, ref_keys: set[str], prefix: str) -> dict[str, str]:
    """``leads_of_refs`` on the asyncpg connection (PostgreSQL, group commit)."""
    if not ref_keys:
        return {}
    refs = [k.removeprefix(prefix) for k in ref_keys]
    found: dict[str, str] = {}
    for ref, lead_id in await raw_call(driver.fetch, _LEADS_OF_REFS, refs):
        found[prefix + str(ref)] = lead_id
    for key, lead_id in await raw_call(driver.fetch, _KEYS_OF_REFS, list(ref_keys)):
        found.setdefault(key, lead_id)
    return found


def _bind_processor(column_type: Any, dialect: Dialect) -> Any:
    cache = _PROCESSORS.setdefault(dialect, {})
    if column_type not in cache:
        process = column_type.bind_processor(dialect)
        if isinstance(column_type, JSON) and process is not None:
            process = _compact_json(process)
        cache[column_type] = process
    return cache[column_type]


def _compact_json(fallback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A JSON column's dicts and lists through orjson (the standard library's encoder,
    SQLAlchemy's default, was a visible share of the group commit; three JSON values per
    lead): the same values read back. Anything else (None, SQL NULL, a value orjson
    refuses, such as a non-string key) is serialized as SQLAlchemy does."""

    def process(value: Any) -> Any:
        if isinstance(value, dict | list):
            try:
                return orjson.dumps(value).decode()
            except TypeError:
                pass
        return fallback(value)

    return process


_PROCESSORS: dict[Dialect, dict[Any, Any]] = {}


async def get_lead(session: AsyncSession, lead_id: str) -> LeadRow | None:
    return await session.get(LeadRow, lead_id)


async def get_idempotency_key(session: AsyncSession, key: str) -> IdempotencyKey | None:
    return await session.get(IdempotencyKey, key)


async def lead_by_external_ref(session: AsyncSession, ref: str) -> LeadRow | None:
    return (
        await session.execute(select(LeadRow).where(LeadRow.external_ref == ref))
    ).scalar_one_or_none()


async def recent_leads_of_people(
    session: AsyncSession, people: set[str], since: datetime
) -> list[tuple[str, str]]:
    """(email or phone, lead id) of real leads created since ``since`` whose email or phone
    is in ``people``; the newest lead of a person comes last."""
    if not people:
        return []
    query = (
        select(LeadRow.email, LeadRow.phone, LeadRow.id)
        .where(
            or_(LeadRow.email.in_(people), LeadRow.phone.in_(people)),
            LeadRow.created_at >= since,
            LeadRow.is_test.is_(False),
        )
        .order_by(LeadRow.created_at)
    )
    found: list[tuple[str, str]] = []
    for email, phone, lead_id in (await session.execute(query)).all():
        found.extend((who, lead_id) for who in (email, phone) if who in people)
    return found


async def leads_of_refs(session: AsyncSession, ref_keys: set[str], prefix: str) -> dict[str, str]:
    """``prefix + external_ref`` → the lead that platform submission became: as a new lead
    (``leads.external_ref``) or absorbed as a resubmission (an idempotency key)."""
    if not ref_keys:
        return {}
    refs = {k.removeprefix(prefix) for k in ref_keys}
    found: dict[str, str] = {}
    leads = select(LeadRow.external_ref, LeadRow.id).where(LeadRow.external_ref.in_(refs))
    for ref, lead_id in (await session.execute(leads)).all():
        found[prefix + str(ref)] = lead_id
    keys = select(IdempotencyKey.key, IdempotencyKey.lead_id).where(
        IdempotencyKey.key.in_(ref_keys)
    )
    for key, lead_id in (await session.execute(keys)).all():
        found.setdefault(key, lead_id)
    return found


async def due_customer_checks(session: AsyncSession, now: datetime, limit: int) -> list[LeadRow]:
    query = (
        select(LeadRow)
        .where(LeadRow.customer_check == "pending", LeadRow.customer_check_due <= now)
        .order_by(LeadRow.customer_check_due)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def due_meta_notifications(
    session: AsyncSession, now: datetime, limit: int
) -> list[MetaNotification]:
    query = (
        select(MetaNotification)
        .where(MetaNotification.status == "pending", MetaNotification.due_at <= now)
        .order_by(MetaNotification.due_at)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def api_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def api_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(ApiKey.source))).scalars())


async def replayable(
    session: AsyncSession, channel: str | None, ids: list[str], outcomes: list[str]
) -> list[RawSubmission]:
    query = select(RawSubmission).order_by(RawSubmission.id)
    if ids:
        query = query.where(RawSubmission.id.in_(ids))
    else:
        query = query.where(RawSubmission.outcome.in_(outcomes))
    if channel:
        query = query.where(RawSubmission.channel == channel)
    return list((await session.execute(query)).scalars())


async def notifications_of_raw(session: AsyncSession, raw_id: str) -> list[MetaNotification]:
    query = select(MetaNotification).where(MetaNotification.raw_id == raw_id)
    return list((await session.execute(query)).scalars())


# ---- erasure (privacy.erased) -----------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    """What one erasure changed, for the log."""

    leads: int
    raw_submissions: int
    idempotency_keys: int
    outbox: int


async def erase_subject(
    session: AsyncSession, subject_hash: str, lead_ids: list[str], now: datetime, batch: int = 500
) -> Erased:
    """Blank every personal field of one person: their leads (by id, and by email hash for
    leads the requester never saw), the archived payloads of those leads and any unlinked
    payload (rejected, spam) naming their email or phone, the idempotency answers of their
    submissions, and their events still waiting in the outbox."""
    query = select(LeadRow).where(or_(LeadRow.id.in_(lead_ids), LeadRow.email_hash == subject_hash))
    leads = list((await session.execute(query)).scalars())
    ids = {row.id for row in leads} | set(lead_ids)
    raw_ids = {row.raw_id for row in leads if row.raw_id}
    needles = {v for row in leads for v in (row.email, row.phone) if v}
    for row in leads:
        if row.erased_at is None:
            row.erased_at = now
        for column, value in erased_lead_values().items():
            setattr(row, column, value)
    await session.flush()

    raw_hit: set[str] = set(
        (
            await session.execute(
                select(RawSubmission.id).where(
                    or_(RawSubmission.lead_id.in_(ids), RawSubmission.id.in_(raw_ids))
                )
            )
        ).scalars()
    )
    if needles:
        # Payloads that never became a lead carry no lead id: read them, a batch at a time.
        last = ""
        while True:
            page = (
                await session.execute(
                    select(RawSubmission.id, RawSubmission.body, RawSubmission.error)
                    .where(RawSubmission.lead_id.is_(None), RawSubmission.id > last)
                    .order_by(RawSubmission.id)
                    .limit(batch)
                )
            ).all()
            if not page:
                break
            for raw_id, body, error in page:
                if mentions(body or b"", needles) or mentions((error or "").encode(), needles):
                    raw_hit.add(raw_id)
            last = page[-1][0]
    if raw_hit:
        await session.execute(
            update(RawSubmission)
            .where(RawSubmission.id.in_(raw_hit))
            .values(body=ERASED_BODY, error=None, outcome=ERASED_OUTCOME)
        )
        await session.execute(
            update(MetaNotification)
            .where(or_(MetaNotification.raw_id.in_(raw_hit), MetaNotification.lead_id.in_(ids)))
            .values(last_error=None)
        )
    # Client keys may be anything (an email, even); a platform ref key ("ref:meta:...") names
    # no one and keeps that platform's retries from bringing the person back.
    keys = await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.lead_id.in_(ids), not_(IdempotencyKey.key.startswith("ref:"))
        )
    )
    pending = await rewrite_pending_events(session, ids, erased_event_data)
    return Erased(
        leads=len(leads),
        raw_submissions=len(raw_hit),
        idempotency_keys=int(keys.rowcount or 0),  # type: ignore[attr-defined]
        outbox=pending,
    )
