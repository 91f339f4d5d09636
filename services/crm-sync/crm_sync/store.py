"""crm-sync's own tables: customers, the leads each customer came from, and the timeline."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Numeric, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), default="lead")
    lifetime_value: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    sources: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerLead(Base):
    __tablename__ = "customer_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)


class TimelineEntry(Base):
    __tablename__ = "timeline"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


async def by_lead(session: AsyncSession, lead_id: str) -> Customer | None:
    query = select(Customer).join(CustomerLead).where(CustomerLead.lead_id == lead_id)
    return (await session.execute(query)).scalar_one_or_none()


async def by_email(session: AsyncSession, email: str) -> Customer | None:
    query = select(Customer).where(Customer.email == email)
    return (await session.execute(query)).scalar_one_or_none()


async def by_phone(session: AsyncSession, phone: str) -> Customer | None:
    query = select(Customer).where(Customer.phone == phone).order_by(Customer.created_at)
    return (await session.execute(query)).scalars().first()


async def lead_ids(session: AsyncSession, customer_id: str) -> list[str]:
    query = select(CustomerLead.lead_id).where(CustomerLead.customer_id == customer_id)
    return list((await session.execute(query)).scalars())


async def timeline(session: AsyncSession, customer_id: str) -> list[TimelineEntry]:
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.customer_id == customer_id)
        .order_by(TimelineEntry.occurred_at, TimelineEntry.event_id)
    )
    return list((await session.execute(query)).scalars())
