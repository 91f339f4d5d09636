"""crm-sync's HTTP API: the read API (customer, lookup, timeline, offers, conflicts), billing
and CRM webhooks, the review queue, merges, outbound sync log and erasure. Thin: the work is
in :mod:`crm_sync.operations` and the rules in the pure modules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_sync import store
from crm_sync.billing import GenericEvent, PayloadError, parse_generic, parse_stripe
from crm_sync.domain import RECORD_FIELDS, email_key, phone_key
from crm_sync.operations import (
    Conflicting,
    NotFound,
    apply_billing_event,
    decide_review,
    erase_subject,
    undo_merge,
)
from crm_sync.records import aware
from crm_sync.runtime import runtime
from crm_sync.signatures import SignatureError, verify
from crm_sync.survivorship import Candidate, survive
from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext


class Provenance(BaseModel):
    value: str
    system: str
    ref: str
    rule: str
    observed_at: datetime


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
    legal_name: str | None
    tax_id: str | None
    billing_address: str | None
    status: str
    lifetime_value: Decimal
    lead_ids: list[str]
    source_records: list[str]
    sources: dict[str, str]
    provenance: dict[str, Provenance]
    conflicts: list[str]
    erased: bool
    created_at: datetime
    updated_at: datetime


class Lookup(BaseModel):
    customer: CustomerOut | None
    is_customer: bool


# NUL is no character of an email or a phone number, and PostgreSQL refuses it in text.
_NO_NUL = r"^[^\x00]*$"
MAX_PEOPLE = 256


class Person(BaseModel):
    """Who to look up: at least a valid email or an international phone number."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320, pattern=_NO_NUL)
    phone: str | None = Field(None, max_length=32, pattern=_NO_NUL)


class People(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"people": [{"email": "ana@acme.example"}, {"phone": "+34612345678"}]}]
        },
    )

    people: list[Person] = Field(
        min_length=1,
        max_length=MAX_PEOPLE,
        description=f"Up to {MAX_PEOPLE} people; the answers come in the same order",
    )


class TimelineItem(BaseModel):
    event_id: str
    kind: str
    occurred_at: datetime
    detail: dict[str, object]


class OfferOut(BaseModel):
    offer_id: str
    invoice: str
    line_id: str | None
    discount: str | None
    coupon: str | None
    description: str | None
    amount: Decimal
    currency: str
    percent_off: Decimal | None
    given_at: datetime


class ConflictOut(BaseModel):
    customer_id: str
    field: str
    chosen: str
    rule: str
    values: list[dict[str, Any]]
    detected_at: datetime


class ReviewOut(BaseModel):
    review_id: str
    status: str
    score: float
    detail: dict[str, Any]
    customer: dict[str, Any]
    candidate: dict[str, Any]
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    merge_id: str | None


class Decision(BaseModel):
    decision: Literal["accept", "reject"]
    by: str | None = Field(None, max_length=200, description="who decided, for the history")


class MergeOut(BaseModel):
    merge_id: str
    survivor_id: str
    absorbed_id: str
    kind: str
    score: float | None
    merged_at: datetime
    undone_at: datetime | None


class SyncOut(BaseModel):
    id: int
    target: str
    customer_id: str
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    sent_at: datetime | None


class WebhookAnswer(BaseModel):
    status: Literal["accepted", "duplicate", "ignored"]
    customer_id: str | None = None


class ErasureOut(BaseModel):
    subject_hash: str
    customer_id: str
    erased_customer_ids: list[str]
    lead_ids: list[str]


def _404(message: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


def build_router(ctx: ServiceContext) -> APIRouter:
    crm = runtime(ctx)
    router = APIRouter()
    # Management routes need a key with their scope; the webhooks authenticate by signature.
    read = [Depends(require_scope(ctx.settings, "customers:read"))]
    write = [Depends(require_scope(ctx.settings, "customers:write"))]
    erase = [Depends(require_scope(ctx.settings, "privacy:erase"))]

    # ---- customers ------------------------------------------------------------------

    @router.get(
        "/v1/customers/lookup",
        dependencies=read,
        response_model=Lookup,
        tags=["customers"],
        summary="Is this person already known, and a paying customer?",
        responses={422: {"description": "Neither email nor phone was given"}},
    )
    async def lookup(
        email: Annotated[str | None, Query(max_length=320, pattern=_NO_NUL)] = None,
        phone: Annotated[str | None, Query(max_length=32, pattern=_NO_NUL)] = None,
    ) -> Lookup:
        keys = email_key(email), phone_key(phone)
        if not any(keys):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "email, phone: give a valid email or an international phone number",
            )
        return (await _lookups([keys]))[0]

    @router.post(
        "/v1/customers/lookups",
        dependencies=read,
        response_model=list[Lookup],
        tags=["customers"],
        summary="The same question for many people at once; one answer each, in order",
        description=(
            "What `GET /v1/customers/lookup` answers, for up to "
            f"{MAX_PEOPLE} people in one request and a fixed number of queries "
            "(intake sends the leads that arrive while its previous request is out)."
        ),
        responses={
            200: {
                "description": "One answer per person, in the order asked",
                "content": {
                    "application/json": {
                        "example": [
                            {"customer": None, "is_customer": False},
                            {"customer": None, "is_customer": False},
                        ]
                    }
                },
            },
            422: {
                "description": "A person without a valid email or phone, or a field "
                "too long (named, e.g. people[3].email)"
            },
        },
    )
    async def lookups(body: People) -> list[Lookup]:
        keys = [(email_key(p.email), phone_key(p.phone)) for p in body.people]
        for i, key in enumerate(keys):
            if not any(key):
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"people[{i}].email, people[{i}].phone: "
                    "give a valid email or an international phone number",
                )
        return await _lookups(keys)

    async def _lookups(keys: list[tuple[str | None, str | None]]) -> list[Lookup]:
        """The single and the batch lookup: a fixed number of queries, whatever the count."""
        async with ctx.db.session() as session:
            found = await store.by_people(session, keys)
            parts = await store.golden_parts(session, [c.id for c in found if c])
            outs = [_customer_out(c, parts[c.id]) if c else None for c in found]
        return [Lookup(customer=o, is_customer=bool(o and o.status == "customer")) for o in outs]

    @router.get(
        "/v1/customers/{customer_id}",
        dependencies=read,
        response_model=CustomerOut,
        tags=["customers"],
        summary="The golden record of one customer (a merged id leads to the survivor)",
        responses={404: {"description": "No customer with this id"}},
    )
    async def read_customer(customer_id: str) -> CustomerOut:
        async with ctx.db.session() as session:
            return await _out(session, await _customer(session, customer_id))

    @router.get(
        "/v1/customers/{customer_id}/timeline",
        dependencies=read,
        response_model=list[TimelineItem],
        tags=["customers"],
        summary="Every interaction with this customer, oldest first",
        responses={404: {"description": "No customer with this id"}},
    )
    async def read_timeline(customer_id: str) -> list[TimelineItem]:
        async with ctx.db.session() as session:
            found = await _customer(session, customer_id)
            entries = await store.timeline(session, found.id)
        return [
            TimelineItem(
                event_id=e.event_id, kind=e.kind, occurred_at=e.occurred_at, detail=e.detail
            )
            for e in entries
        ]

    @router.get(
        "/v1/customers/{customer_id}/offers",
        dependencies=read,
        response_model=list[OfferOut],
        tags=["customers"],
        summary="Discounts this customer was already given, so none is offered twice",
        responses={404: {"description": "No customer with this id"}},
    )
    async def read_offers(customer_id: str) -> list[OfferOut]:
        async with ctx.db.session() as session:
            found = await _customer(session, customer_id)
            rows = await store.offers(session, found.id)
        return [
            OfferOut(
                offer_id=o.id,
                invoice=o.invoice_ref,
                line_id=o.line_id,
                discount=o.discount,
                coupon=o.coupon,
                description=o.description,
                amount=o.amount,
                currency=o.currency,
                percent_off=o.percent_off,
                given_at=o.given_at,
            )
            for o in rows
        ]

    @router.get(
        "/v1/customers/{customer_id}/merges",
        dependencies=read,
        response_model=list[MergeOut],
        tags=["resolution"],
        summary="Merges this customer took part in (history, undone ones included)",
        responses={404: {"description": "No customer with this id"}},
    )
    async def read_merges(customer_id: str) -> list[MergeOut]:
        async with ctx.db.session() as session:
            if await session.get(store.Customer, customer_id) is None:
                raise _404(f"customer_id: no customer {customer_id!r}")
            query = (
                select(store.Merge)
                .where(
                    (store.Merge.survivor_id == customer_id)
                    | (store.Merge.absorbed_id == customer_id)
                )
                .order_by(store.Merge.merged_at)
            )
            return [_merge_out(m) for m in (await session.execute(query)).scalars()]

    @router.get(
        "/v1/conflicts",
        dependencies=read,
        response_model=list[ConflictOut],
        tags=["resolution"],
        summary="Fields whose sources disagree: every value, and the one that survived",
    )
    async def read_conflicts(
        customer_id: Annotated[str | None, Query(max_length=36)] = None,
        field: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[ConflictOut]:
        if field is not None and field not in RECORD_FIELDS:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"field: one of {', '.join(RECORD_FIELDS)}",
            )
        query = select(store.Conflict).order_by(
            store.Conflict.detected_at.desc(), store.Conflict.customer_id, store.Conflict.field
        )
        if customer_id:
            query = query.where(store.Conflict.customer_id == customer_id)
        if field:
            query = query.where(store.Conflict.field == field)
        async with ctx.db.session() as session:
            rows = (await session.execute(query.limit(limit))).scalars()
            return [
                ConflictOut(
                    customer_id=c.customer_id,
                    field=c.field,
                    chosen=c.chosen,
                    rule=c.rule,
                    values=c.candidates,
                    detected_at=c.detected_at,
                )
                for c in rows
            ]

    # ---- review queue and merges -----------------------------------------------------

    @router.get(
        "/v1/reviews",
        dependencies=read,
        response_model=list[ReviewOut],
        tags=["resolution"],
        summary="Pairs the matcher was unsure about (the uncertain band), oldest first",
    )
    async def read_reviews(
        status_: Annotated[Literal["open", "accepted", "rejected"], Query(alias="status")] = "open",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[ReviewOut]:
        query = (
            select(store.Review)
            .where(store.Review.status == status_)
            .order_by(store.Review.created_at, store.Review.id)
            .limit(limit)
        )
        async with ctx.db.session() as session:
            rows = list((await session.execute(query)).scalars())
            return [await _review_out(session, r) for r in rows]

    @router.post(
        "/v1/reviews/{review_id}",
        dependencies=write,
        response_model=ReviewOut,
        tags=["resolution"],
        summary="Accept (merge the pair) or reject (keep them apart for good)",
        responses={404: {"description": "No such review"}, 409: {"description": "Decided"}},
    )
    async def post_review(review_id: str, body: Decision) -> ReviewOut:
        try:
            review = await decide_review(ctx, crm, review_id, body.decision, body.by)
        except NotFound as exc:
            raise _404(str(exc)) from exc
        except Conflicting as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        async with ctx.db.session() as session:
            return await _review_out(session, review)

    @router.post(
        "/v1/merges/{merge_id}/undo",
        dependencies=write,
        response_model=MergeOut,
        tags=["resolution"],
        summary="Un-merge: both records come back as they were, the history stays",
        responses={404: {"description": "No such merge"}, 409: {"description": "Undone"}},
    )
    async def post_undo(merge_id: str) -> MergeOut:
        try:
            return _merge_out(await undo_merge(ctx, crm, merge_id))
        except NotFound as exc:
            raise _404(str(exc)) from exc
        except Conflicting as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc

    # ---- webhooks ----------------------------------------------------------------------

    async def _body(request: Request) -> bytes:
        body = await request.body()
        if len(body) > crm.settings.max_body_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"body: larger than {crm.settings.max_body_bytes} bytes",
            )
        return body

    def _verify(
        header: str, value: str | None, body: bytes, secrets: list[str], window: float
    ) -> None:
        try:
            verify(header, value, body, secrets, ctx.clock.now(), window)
        except SignatureError as exc:
            code = status.HTTP_400_BAD_REQUEST if exc.malformed else status.HTTP_401_UNAUTHORIZED
            raise HTTPException(code, str(exc)) from exc

    @router.post(
        "/v1/webhooks/stripe",
        response_model=WebhookAnswer,
        tags=["webhooks"],
        summary="Stripe events: customer.created/updated, invoice.finalized/paid",
        responses={
            400: {"description": "Stripe-Signature header or body malformed"},
            401: {"description": "Signature does not match, or outside the replay window"},
            422: {"description": "The event lacks a field crm-sync needs (named)"},
            503: {"description": "No Stripe endpoint secret configured"},
        },
    )
    async def stripe_webhook(
        request: Request,
        stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
    ) -> WebhookAnswer:
        secrets = crm.settings.stripe_webhook_secrets
        if not any(secrets):
            crm.metrics.webhooks.labels("stripe", "rejected").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "LEADPACT_CRM_SYNC_STRIPE_WEBHOOK_SECRETS: not configured",
            )
        body = await _body(request)
        try:
            _verify(
                "Stripe-Signature",
                stripe_signature,
                body,
                secrets,
                crm.settings.stripe_tolerance_seconds,
            )
            event = parse_stripe(_json(body))
        except HTTPException:
            crm.metrics.webhooks.labels("stripe", "rejected").inc()
            raise
        except PayloadError as exc:
            crm.metrics.webhooks.labels("stripe", "rejected").inc()
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        result, customer_id = await apply_billing_event(ctx, crm, "stripe", event)
        crm.metrics.webhooks.labels("stripe", result).inc()
        return WebhookAnswer(status=result, customer_id=customer_id)

    async def generic(
        system: Literal["crm", "billing"], request: Request, signature: str | None
    ) -> WebhookAnswer:
        secrets = crm.settings.webhook_secrets
        if not any(secrets):
            crm.metrics.webhooks.labels(system, "rejected").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "LEADPACT_CRM_SYNC_WEBHOOK_SECRETS: not configured",
            )
        body = await _body(request)
        try:
            _verify(
                "Webhook-Signature",
                signature,
                body,
                secrets,
                crm.settings.webhook_tolerance_seconds,
            )
            event = parse_generic(system, GenericEvent.model_validate(_json(body)))
        except HTTPException:
            crm.metrics.webhooks.labels(system, "rejected").inc()
            raise
        except ValidationError as exc:
            crm.metrics.webhooks.labels(system, "rejected").inc()
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _first(exc)) from exc
        except PayloadError as exc:
            crm.metrics.webhooks.labels(system, "rejected").inc()
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        result, customer_id = await apply_billing_event(ctx, crm, system, event)
        crm.metrics.webhooks.labels(system, result).inc()
        return WebhookAnswer(status=result, customer_id=customer_id)

    generic_responses: dict[int | str, dict[str, Any]] = {
        400: {"description": "Webhook-Signature header or body malformed"},
        401: {"description": "Signature does not match, or outside the replay window"},
        422: {"description": "A field is missing or invalid (named)"},
        503: {"description": "No webhook secret configured"},
    }

    @router.post(
        "/v1/webhooks/crm",
        response_model=WebhookAnswer,
        tags=["webhooks"],
        summary="Generic signed JSON from a CRM: contact updates (sales is the source)",
        responses=generic_responses,
    )
    async def crm_webhook(
        request: Request,
        signature: Annotated[str | None, Header(alias="Webhook-Signature")] = None,
    ) -> WebhookAnswer:
        return await generic("crm", request, signature)

    @router.post(
        "/v1/webhooks/billing",
        response_model=WebhookAnswer,
        tags=["webhooks"],
        summary="Generic signed JSON from a billing system: customers and invoices",
        responses=generic_responses,
    )
    async def billing_webhook(
        request: Request,
        signature: Annotated[str | None, Header(alias="Webhook-Signature")] = None,
    ) -> WebhookAnswer:
        return await generic("billing", request, signature)

    # ---- outbound sync log and privacy ---------------------------------------------------

    @router.get(
        "/v1/sync",
        dependencies=read,
        response_model=list[SyncOut],
        tags=["sync"],
        summary="The outbound sync log: pushes to the CRM and billing, newest first",
    )
    async def read_sync(
        customer_id: Annotated[str | None, Query(max_length=36)] = None,
        status_: Annotated[
            Literal["pending", "sent", "failed", "superseded"] | None, Query(alias="status")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[SyncOut]:
        query = select(store.SyncEntry).order_by(store.SyncEntry.id.desc()).limit(limit)
        if customer_id:
            query = query.where(store.SyncEntry.customer_id == customer_id)
        if status_:
            query = query.where(store.SyncEntry.status == status_)
        async with ctx.db.session() as session:
            return [
                SyncOut(
                    id=r.id,
                    target=r.target,
                    customer_id=r.customer_id,
                    idempotency_key=r.idempotency_key,
                    status=r.status,
                    attempts=r.attempts,
                    next_attempt_at=r.next_attempt_at,
                    last_status=r.last_status,
                    last_error=r.last_error,
                    sent_at=r.sent_at,
                )
                for r in (await session.execute(query)).scalars()
            ]

    @router.delete(
        "/v1/subjects",
        dependencies=erase,
        response_model=ErasureOut,
        tags=["privacy"],
        summary="Erase a person: personal fields removed here, privacy.erased emitted",
        responses={404: {"description": "No customer with this email"}},
    )
    async def delete_subject(email: Annotated[str, Query(max_length=320)]) -> ErasureOut:
        key = email_key(email)
        if key is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "email: not an email address"
            )
        try:
            done = await erase_subject(ctx, crm, key)
        except NotFound as exc:
            raise _404(str(exc)) from exc
        return ErasureOut(
            subject_hash=done.subject_hash,
            customer_id=done.customer_id,
            erased_customer_ids=done.customer_ids,
            lead_ids=done.lead_ids,
        )

    return router


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body: not JSON ({exc})") from exc


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


async def _customer(session: AsyncSession, customer_id: str) -> store.Customer:
    found = await store.live(session, await session.get(store.Customer, customer_id))
    if found is None:
        raise _404(f"customer_id: no customer {customer_id!r}")
    return found


def _merge_out(m: store.Merge) -> MergeOut:
    return MergeOut(
        merge_id=m.id,
        survivor_id=m.survivor_id,
        absorbed_id=m.absorbed_id,
        kind=m.kind,
        score=m.score,
        merged_at=m.merged_at,
        undone_at=m.undone_at,
    )


async def _review_out(session: AsyncSession, r: store.Review) -> ReviewOut:
    async def brief(customer_id: str) -> dict[str, Any]:
        c = await session.get(store.Customer, customer_id)
        if c is None:
            return {"customer_id": customer_id}
        return {
            "customer_id": c.id,
            "merged_into": c.merged_into,
            **{name: getattr(c, name) for name in RECORD_FIELDS},
        }

    return ReviewOut(
        review_id=r.id,
        status=r.status,
        score=r.score,
        detail=r.detail,
        customer=await brief(r.customer_id),
        candidate=await brief(r.candidate_id),
        created_at=r.created_at,
        decided_at=r.decided_at,
        decided_by=r.decided_by,
        merge_id=r.merge_id,
    )


async def _out(session: AsyncSession, c: store.Customer) -> CustomerOut:
    parts = store.GoldenParts(
        await store.attributes(session, c.id),
        await store.lead_ids(session, c.id),
        await store.refs(session, c.id),
    )
    return _customer_out(c, parts)


def _customer_out(c: store.Customer, parts: store.GoldenParts) -> CustomerOut:
    chosen, conflicts = survive(
        [
            Candidate(a.field, a.value, a.system, a.ref, a.verified, aware(a.observed_at))
            for a in parts.attributes
        ]
    )
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
        legal_name=c.legal_name,
        tax_id=c.tax_id,
        billing_address=c.billing_address,
        status=c.status,
        lifetime_value=c.lifetime_value or Decimal("0"),
        lead_ids=parts.lead_ids,
        source_records=parts.refs,
        sources=c.sources or {},
        provenance={
            f: Provenance(
                value=s.value, system=s.system, ref=s.ref, rule=s.rule, observed_at=s.observed_at
            )
            for f, s in chosen.items()
        },
        conflicts=[x.field for x in conflicts],
        erased=c.erased_at is not None,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )
