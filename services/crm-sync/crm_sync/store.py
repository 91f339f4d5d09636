"""crm-sync's own tables: customers, the source records each customer is made of (leads,
billing and CRM records), per-field observations with their provenance, conflicts, merges and
reviews, invoices and the offers they carried, and the outbound sync log."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class Customer(Base):
    """The golden record: each column holds the value that survived its field's rule."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    legal_name: Mapped[str | None] = mapped_column(String(300))
    tax_id: Mapped[str | None] = mapped_column(String(64), index=True)
    billing_address: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="lead")
    lifetime_value: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    sources: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    sort_key: Mapped[str | None] = mapped_column(String(200), index=True)
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerLead(Base):
    __tablename__ = "customer_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)


class SourceRecord(Base):
    """A record of another system (``stripe:cus_1``, ``crm:42``) and the customer it is part of."""

    __tablename__ = "source_records"

    ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    system: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Attribute(Base):
    """One source's value of one field: the candidates survivorship chooses from."""

    __tablename__ = "customer_attributes"
    __table_args__ = (UniqueConstraint("customer_id", "field", "ref"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(500))
    system: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(200), index=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ix_customer_attributes_field_value", Attribute.field, Attribute.value)


class MatchKey(Base):
    """Blocking keys of a customer (phonetic name keys, company and postcode keys)."""

    __tablename__ = "match_keys"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True, index=True)


class Conflict(Base):
    """A field whose sources disagree: every value is kept, one survives by its rule."""

    __tablename__ = "conflicts"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    field: Mapped[str] = mapped_column(String(32), primary_key=True)
    chosen: Mapped[str] = mapped_column(String(500))
    rule: Mapped[str] = mapped_column(String(64))
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Merge(Base):
    """One customer absorbed into another, with what moved, so it can be undone."""

    __tablename__ = "merges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    absorbed_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # auto | review
    score: Mapped[float | None] = mapped_column()
    moved: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Review(Base):
    """A pair the matcher was unsure about, waiting for a person's decision."""

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    score: Mapped[float] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    merge_id: Mapped[str | None] = mapped_column(String(36))


class Invoice(Base):
    __tablename__ = "invoices"

    ref: Mapped[str] = mapped_column(String(200), primary_key=True)  # stripe:in_1
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    paid: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Offer(Base):
    """A discount a customer was given on an invoice line (so it is not offered twice)."""

    __tablename__ = "offers"

    id: Mapped[str] = mapped_column(String(300), primary_key=True)  # invoice ref/line/discount
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    invoice_ref: Mapped[str] = mapped_column(String(200), index=True)
    line_id: Mapped[str | None] = mapped_column(String(200))
    discount: Mapped[str | None] = mapped_column(String(200))
    coupon: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    percent_off: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    given_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SyncEntry(Base):
    """One push of one customer's state to one outside system (the sync log)."""

    __tablename__ = "sync_log"
    __table_args__ = (UniqueConstraint("target", "idempotency_key"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_sync_log_status_next", SyncEntry.status, SyncEntry.next_attempt_at)


class TimelineEntry(Base):
    __tablename__ = "timeline"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# ---- queries -------------------------------------------------------------------------------


async def live(session: AsyncSession, customer: Customer | None) -> Customer | None:
    """Follow ``merged_into`` to the customer that absorbed this one."""
    seen: set[str] = set()
    while customer is not None and customer.merged_into and customer.id not in seen:
        seen.add(customer.id)
        customer = await session.get(Customer, customer.merged_into)
    return customer


async def lock(session: AsyncSession, customer: Customer) -> None:
    """Serialise writers of one golden record (PostgreSQL row lock until commit): its
    candidates, keys and conflicts are rewritten as a whole. SQLite has one writer anyway."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        query = select(Customer.id).where(Customer.id == customer.id).with_for_update()
        await session.execute(query)
        await session.refresh(customer)


async def lock_keys(session: AsyncSession, keys: list[str]) -> None:
    """Serialise the resolution of records sharing an identity key (email, phone, tax id)
    with transaction-scoped advisory locks on PostgreSQL, taken in a fixed order: the
    second of two concurrent writers of one person waits, then finds the first's record
    instead of failing on the unique email and being retried."""
    bind = session.bind
    if bind is None or bind.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )


async def by_lead(session: AsyncSession, lead_id: str) -> Customer | None:
    query = select(Customer).join(CustomerLead).where(CustomerLead.lead_id == lead_id)
    return await live(session, (await session.execute(query)).scalar_one_or_none())


async def by_ref(session: AsyncSession, ref: str) -> Customer | None:
    query = select(Customer).join(SourceRecord).where(SourceRecord.ref == ref)
    return await live(session, (await session.execute(query)).scalar_one_or_none())


async def by_email(session: AsyncSession, email: str) -> Customer | None:
    query = select(Customer).where(Customer.email == email)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        found = await by_attribute(session, "email", email)
    return await live(session, found)


async def by_phone(session: AsyncSession, phone: str) -> Customer | None:
    query = (
        select(Customer)
        .where(Customer.phone == phone, Customer.merged_into.is_(None))
        .order_by(Customer.created_at)
    )
    found = (await session.execute(query)).scalars().first()
    if found is None:
        found = await by_attribute(session, "phone", phone)
    return await live(session, found)


async def by_tax_id(session: AsyncSession, tax_id: str) -> Customer | None:
    query = select(Customer).where(Customer.tax_id == tax_id, Customer.merged_into.is_(None))
    found = (await session.execute(query)).scalars().first()
    if found is None:
        found = await by_attribute(session, "tax_id", tax_id)
    return await live(session, found)


async def by_attribute(session: AsyncSession, field: str, value: str) -> Customer | None:
    query = (
        select(Customer)
        .join(Attribute, Attribute.customer_id == Customer.id)
        .where(Attribute.field == field, Attribute.value == value)
        .order_by(Customer.created_at)
    )
    return await live(session, (await session.execute(query)).scalars().first())


async def attributes(session: AsyncSession, customer_id: str) -> list[Attribute]:
    query = select(Attribute).where(Attribute.customer_id == customer_id).order_by(Attribute.id)
    return list((await session.execute(query)).scalars())


async def systems(session: AsyncSession, customer_id: str) -> set[str]:
    """The kinds of source (lead, crm, billing) a customer's values came from."""
    query = select(Attribute.system).where(Attribute.customer_id == customer_id).distinct()
    found = set((await session.execute(query)).scalars())
    query = select(SourceRecord.system).where(SourceRecord.customer_id == customer_id).distinct()
    return found | set((await session.execute(query)).scalars())


async def lead_ids(session: AsyncSession, customer_id: str) -> list[str]:
    query = select(CustomerLead.lead_id).where(CustomerLead.customer_id == customer_id)
    return sorted((await session.execute(query)).scalars())


async def refs(session: AsyncSession, customer_id: str) -> list[str]:
    query = select(SourceRecord.ref).where(SourceRecord.customer_id == customer_id)
    return sorted((await session.execute(query)).scalars())


async def timeline(session: AsyncSession, customer_id: str) -> list[TimelineEntry]:
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.customer_id == customer_id)
        .order_by(TimelineEntry.occurred_at, TimelineEntry.event_id)
    )
    return list((await session.execute(query)).scalars())


async def offers(session: AsyncSession, customer_id: str) -> list[Offer]:
    query = select(Offer).where(Offer.customer_id == customer_id).order_by(Offer.given_at, Offer.id)
    return list((await session.execute(query)).scalars())


async def candidates_by_keys(
    session: AsyncSession, keys: list[str], exclude: str, limit: int
) -> list[Customer]:
    if not keys:
        return []
    ids = (
        select(MatchKey.customer_id)
        .where(MatchKey.key.in_(keys), MatchKey.customer_id != exclude)
        .distinct()
        .limit(limit)
    )
    query = select(Customer).where(Customer.id.in_(ids), Customer.merged_into.is_(None))
    return list((await session.execute(query)).scalars())


async def neighbours(
    session: AsyncSession, sort_key: str | None, exclude: str, window: int
) -> list[Customer]:
    """Sorted neighbourhood: the ``window`` customers on each side of ``sort_key``."""
    if not sort_key or window <= 0:
        return []
    base = select(Customer).where(Customer.merged_into.is_(None), Customer.id != exclude)
    below = base.where(Customer.sort_key <= sort_key).order_by(Customer.sort_key.desc())
    above = base.where(Customer.sort_key > sort_key).order_by(Customer.sort_key)
    found = list((await session.execute(below.limit(window))).scalars())
    found += list((await session.execute(above.limit(window))).scalars())
    return found
