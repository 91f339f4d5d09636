"""Intake's own tables: leads, idempotency keys, raw submissions, Meta notifications, API
keys; and the queries on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    LargeBinary,
    String,
    Text,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from leadpact.db import UtcDateTime


class Base(DeclarativeBase):
    pass


class LeadRow(Base):
    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
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
