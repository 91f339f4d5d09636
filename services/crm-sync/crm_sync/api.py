"""crm-sync's read API: a customer by id, and the lookup intake and marketing use."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from crm_sync import store
from crm_sync.domain import email_key, phone_key
from leadpact.service import ServiceContext


class CustomerOut(BaseModel):
    customer_id: str
    email: str | None
    phone: str | None
    name: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    country: str | None
    status: str
    lifetime_value: Decimal
    lead_ids: list[str]
    sources: dict[str, str]
    created_at: datetime
    updated_at: datetime


class Lookup(BaseModel):
    customer: CustomerOut | None
    is_customer: bool


class TimelineItem(BaseModel):
    event_id: str
    kind: str
    occurred_at: datetime
    detail: dict[str, object]


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/v1/customers", tags=["customers"])

    @router.get(
        "/lookup",
        response_model=Lookup,
        summary="Is this person already known, and a paying customer?",
        responses={422: {"description": "Neither email nor phone was given"}},
    )
    async def lookup(
        email: Annotated[str | None, Query(max_length=320)] = None,
        phone: Annotated[str | None, Query(max_length=32)] = None,
    ) -> Lookup:
        e_key, p_key = email_key(email), phone_key(phone)
        if not e_key and not p_key:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "email, phone: give a valid email or an international phone number",
            )
        async with ctx.db.session() as session:
            found = await store.by_email(session, e_key) if e_key else None
            if found is None and p_key:
                found = await store.by_phone(session, p_key)
            out = await _out(session, found) if found else None
        return Lookup(customer=out, is_customer=bool(out and out.status == "customer"))

    @router.get(
        "/{customer_id}",
        response_model=CustomerOut,
        summary="The golden record of one customer",
        responses={404: {"description": "No customer with this id"}},
    )
    async def read_customer(customer_id: str) -> CustomerOut:
        async with ctx.db.session() as session:
            found = await session.get(store.Customer, customer_id)
            if found is None:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"customer_id: no customer {customer_id!r}"
                )
            return await _out(session, found)

    @router.get(
        "/{customer_id}/timeline",
        response_model=list[TimelineItem],
        summary="Every interaction with this customer, oldest first",
        responses={404: {"description": "No customer with this id"}},
    )
    async def read_timeline(customer_id: str) -> list[TimelineItem]:
        async with ctx.db.session() as session:
            if await session.get(store.Customer, customer_id) is None:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"customer_id: no customer {customer_id!r}"
                )
            entries = await store.timeline(session, customer_id)
        return [
            TimelineItem(
                event_id=e.event_id, kind=e.kind, occurred_at=e.occurred_at, detail=e.detail
            )
            for e in entries
        ]

    return router


async def _out(session: AsyncSession, c: store.Customer) -> CustomerOut:
    name = " ".join(p for p in (c.first_name, c.last_name) if p) or None
    return CustomerOut(
        customer_id=c.id,
        email=c.email,
        phone=c.phone,
        name=name,
        first_name=c.first_name,
        last_name=c.last_name,
        company=c.company,
        title=c.title,
        country=c.country,
        status=c.status,
        lifetime_value=c.lifetime_value or Decimal("0"),
        lead_ids=await store.lead_ids(session, c.id),
        sources=c.sources or {},
        created_at=c.created_at,
        updated_at=c.updated_at,
    )
