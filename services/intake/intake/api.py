"""Intake's generic JSON API: thin routes; rules live in ``domain``, storage in ``reception``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError

from intake import store
from intake.access import (
    API_KEY_DOC,
    API_KEY_HEADER,
    Caller,
    caller_dependency,
    header,
    header_parameter,
    identify,
)
from intake.domain.lead import EXAMPLE, LeadIn, fingerprint
from intake.guard import GuardedRoute, read_body
from intake.openapi import body
from intake.reception import IdempotentRequest, Raw, validation_problems
from intake.runtime import Runtime
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
    is_test: bool
    existing_customer: bool | None
    customer_check: str


SUBMIT_DOC = (
    "Cleans the lead (email normalised, phone to E.164, country to ISO 3166, names trimmed, "
    "UTM from `landing_url`; unknown fields kept in `attributes`), then stores it and its "
    "`lead.created` event in one transaction: 202 only after commit. The same person again "
    "within the resubmission window becomes a `lead.activity` (`resubmitted`) on the existing "
    "lead (`status: resubmitted`). A retry with the same `Idempotency-Key` and body gets the "
    "stored answer; the same key with a different body gets 422."
)


def build_router(ctx: ServiceContext, parts: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["leads"], route_class=GuardedRoute)
    reader = caller_dependency(ctx, parts, "leads:read")

    @router.post(
        "/leads",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=LeadAccepted,
        summary="Submit a lead",
        description=SUBMIT_DOC,
        openapi_extra={
            **body(("application/json", LeadIn), example=EXAMPLE),
            "parameters": [
                header_parameter("idempotency-key", "Idempotency-Key"),
                header_parameter(API_KEY_HEADER, "X-Api-Key", API_KEY_DOC),
            ],
        },
        responses={
            401: {"description": "X-API-Key missing (when required), unknown or revoked"},
            403: {"description": "The API key lacks the leads:write scope"},
            413: {"description": "Body larger than the limit"},
            415: {"description": "Content-Type is not application/json"},
            422: {
                "description": "A field is invalid (named in `loc`), or the "
                "Idempotency-Key was used for a different body"
            },
            429: {"description": "Rate limit of this API key; see Retry-After"},
        },
    )
    async def submit_lead(request: Request) -> Response:
        # The hot route: it reads its two headers itself (documented in ``openapi_extra``)
        # and answers with bytes, so FastAPI solves no dependencies and validates no
        # response model per lead; errors are shaped as FastAPI's own.
        caller = await identify(ctx, parts, header(request, API_KEY_HEADER), "leads:write")
        idempotency_key = header(request, "idempotency-key")
        raw_body = await read_body(request)
        raw = Raw("api", request.headers.get("content-type", ""), raw_body, caller.key_id)
        document = _json(raw_body)
        idempotent = None
        if idempotency_key:
            idempotent = IdempotentRequest(
                f"{caller.key_id or '-'}:{idempotency_key}", fingerprint(document)
            )
            replay = await _replayed(ctx, idempotent)
            if replay is not None:
                return _accepted(replay)
        try:
            lead = parts.reception.validate(_with_key_source(document, caller))
        except ValidationError as exc:
            await parts.reception.reject(raw, str(exc))
            raise RequestValidationError(validation_problems(exc)) from None
        try:
            received = await parts.reception.receive(lead, raw, idempotent=idempotent)
        except IntegrityError:
            # A concurrent retry with the same key won the race: answer as it did.
            replay = await _replayed(ctx, idempotent) if idempotent else None
            if replay is None:
                raise
            return _accepted(replay)
        return _accepted(LeadAccepted(lead_id=received.lead_id, status=received.status))

    @router.get(
        "/leads/{lead_id}",
        response_model=LeadOut,
        summary="Read a stored lead",
        responses={404: {"description": "No lead with this id"}},
    )
    async def read_lead(
        lead_id: str,
        caller: Caller = Depends(reader),
    ) -> LeadOut:
        async with ctx.db.session() as session:
            row = await store.get_lead(session, lead_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"lead_id: no lead {lead_id!r}")
        return _lead_out(row)

    return router


def _accepted(answer: LeadAccepted) -> Response:
    return Response(
        orjson.dumps({"lead_id": answer.lead_id, "status": answer.status}),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
    )


def _json(raw_body: bytes) -> Any:
    try:
        return orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": f"invalid JSON: {exc}", "type": "json_invalid"}]
        ) from None


def _with_key_source(document: Any, caller: Caller) -> Any:
    """A key belongs to one source: its leads carry that platform unless they say one."""
    if caller.source is None or not isinstance(document, dict):
        return document
    source = document.get("source")
    if source is None:
        return {**document, "source": {"platform": caller.source}}
    if isinstance(source, dict) and not source.get("platform"):
        return {**document, "source": {**source, "platform": caller.source}}
    return document


async def _replayed(ctx: ServiceContext, request: IdempotentRequest) -> LeadAccepted | None:
    async with ctx.db.session() as session:
        stored = await store.get_idempotency_key(session, request.key)
    if stored is None:
        return None
    if stored.fingerprint != request.fingerprint:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "Idempotency-Key: already used for a different request body",
        )
    if stored.response:
        return LeadAccepted.model_validate(stored.response)
    return LeadAccepted(lead_id=stored.lead_id)


def _lead_out(row: store.LeadRow) -> LeadOut:
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
        is_test=row.is_test,
        existing_customer=row.existing_customer,
        customer_check=row.customer_check,
    )
