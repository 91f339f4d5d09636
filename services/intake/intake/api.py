"""Intake's HTTP routes: thin, the rules live in ``domain`` and the tables in ``store``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, status
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from intake import store
from intake.domain import LeadIn, lead_created
from leadpact.service import ServiceContext


class LeadAccepted(BaseModel):
    lead_id: str
    status: str = "accepted"


class LeadOut(BaseModel):
    lead_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    company_size: int | None
    industry: str | None
    country: str | None
    source: dict[str, Any]
    consent: dict[str, Any] | None
    attributes: dict[str, Any]
    created_at: datetime


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["leads"])

    @router.post(
        "/leads",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=LeadAccepted,
        summary="Submit a lead",
        description="Stores the lead and its `lead.created` event in one transaction; "
        "answers 202 only after commit. Retries with the same `Idempotency-Key` and body "
        "get the same answer; the same key with a different body gets 422.",
        responses={
            422: {
                "description": "A field is invalid, or the Idempotency-Key was "
                "used for a different body"
            }
        },
    )
    async def submit_lead(
        lead: LeadIn,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> LeadAccepted:
        fingerprint = lead.fingerprint()
        if idempotency_key:
            replay = await _replayed(ctx, idempotency_key, fingerprint)
            if replay is not None:
                return replay
        lead_id = str(uuid.uuid4())
        now = ctx.clock.now()
        event = lead_created(lead_id, lead, now)
        try:
            async with ctx.uow() as uow:
                uow.session.add(_row(event.model_dump(), now))
                if idempotency_key:
                    uow.session.add(
                        store.IdempotencyKey(
                            key=idempotency_key,
                            fingerprint=fingerprint,
                            lead_id=lead_id,
                            created_at=now,
                        )
                    )
                uow.emit(event, ctx.contracts.current(now.date()).version)
                await uow.commit()
        except IntegrityError:
            # A concurrent retry with the same key won the race: answer as it did.
            replay = await _replayed(ctx, idempotency_key or "", fingerprint)
            if replay is None:
                raise
            return replay
        return LeadAccepted(lead_id=lead_id)

    @router.get(
        "/leads/{lead_id}",
        response_model=LeadOut,
        summary="Read a stored lead",
        responses={404: {"description": "No lead with this id"}},
    )
    async def read_lead(lead_id: str) -> LeadOut:
        async with ctx.db.session() as session:
            row = await store.get_lead(session, lead_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"lead_id: no lead {lead_id!r}")
        return LeadOut(
            lead_id=row.id,
            email=row.email,
            phone=row.phone,
            first_name=row.first_name,
            last_name=row.last_name,
            company=row.company,
            title=row.title,
            company_size=row.company_size,
            industry=row.industry,
            country=row.country,
            source=row.source,
            consent=row.consent,
            attributes=row.attributes,
            created_at=row.created_at,
        )

    return router


async def _replayed(ctx: ServiceContext, key: str, fingerprint: str) -> LeadAccepted | None:
    async with ctx.db.session() as session:
        stored = await store.get_idempotency_key(session, key)
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "Idempotency-Key: already used for a different request body",
        )
    return LeadAccepted(lead_id=stored.lead_id)


def _row(data: dict[str, Any], now: datetime) -> store.LeadRow:
    return store.LeadRow(
        id=data["lead_id"],
        email=data["email"],
        phone=data["phone"],
        first_name=data["first_name"],
        last_name=data["last_name"],
        company=data["company"],
        title=data["title"],
        company_size=data["company_size"],
        industry=data["industry"],
        country=data["country"],
        source=_jsonable(data["source"]),
        consent=_jsonable(data["consent"]) if data["consent"] else None,
        attributes=data["attributes"],
        created_at=now,
    )


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in value.items()}
