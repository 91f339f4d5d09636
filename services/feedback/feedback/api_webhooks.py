"""CRM webhooks: HubSpot (v3 signature) and a generic HMAC-signed JSON webhook, both turned
into the same sales activities as ``POST /v1/activities`` through the status mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from feedback import recording, store
from feedback.domain.activities import Activity, Problem, refuse_nul
from feedback.domain.webhooks import (
    GENERIC_SIGNATURE,
    GENERIC_TIMESTAMP,
    HUBSPOT_SIGNATURE,
    HUBSPOT_TIMESTAMP,
    Mapped,
    SignatureError,
    StatusMap,
    activity_from,
    read_hubspot_event,
    verify_generic,
    verify_hubspot,
)
from feedback.metrics import FeedbackMetrics
from feedback.settings import FeedbackSettings
from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext

ACTIVITY = TypeAdapter(Activity)
MAX_BODY = 1024 * 1024
ACTIVITY_TYPES = ("contacted", "accepted", "rejected", "won", "lost")


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crm: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$", examples=["hubspot"])
    object_id: str = Field(min_length=1, max_length=100)
    lead_id: str = Field(min_length=1, max_length=64)

    _no_nul = field_validator("*")(refuse_nul)


class GenericEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, max_length=100, description="the sender's id; repeats are ignored")
    lead_id: str = Field(min_length=1, max_length=64)
    status: str = Field(min_length=1, max_length=100)
    occurred_at: AwareDatetime | None = None
    owner: str | None = Field(None, max_length=200)
    channel: str | None = None
    outcome: str | None = None
    reason: str | None = Field(None, max_length=64)
    note: str | None = Field(None, max_length=2000)
    amount: Decimal | None = None
    currency: str | None = None

    _no_nul = field_validator("*")(refuse_nul)


class GenericBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[GenericEvent] = Field(min_length=1, max_length=500)


def _refused(status: int, header: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": ["header", header], "msg": message, "type": "value_error"}]},
        status_code=status,
    )


def _headers(request: Request, *names: str) -> dict[str, str | None]:
    return {n: request.headers.get(n) for n in names}


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"])
    metrics: FeedbackMetrics = ctx.extras["feedback_metrics"]
    settings: FeedbackSettings = ctx.extras["feedback_settings"]
    status_map: StatusMap = ctx.extras["status_map"]
    max_age = timedelta(seconds=settings.signature_max_age_seconds)

    async def body_of(request: Request) -> bytes | None:
        raw = await request.body()
        return raw if len(raw) <= MAX_BODY else None

    @router.post(
        "/crm-links",
        status_code=201,
        summary="Tell feedback which lead a CRM object (a HubSpot contact or deal) is",
        # The only management route here: the webhooks below authenticate by signature.
        dependencies=[Depends(require_scope(ctx.settings, "activities:write"))],
    )
    async def post_link(link: Annotated[LinkIn, Body()]) -> dict[str, str]:
        async with ctx.uow() as uow:
            await store.link(uow.session, link.crm, link.object_id, link.lead_id)
            await uow.commit()
        return link.model_dump()

    @router.post(
        "/webhooks/hubspot",
        summary="HubSpot webhook (v3 signature): property changes and engagements",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "array"}}},
            }
        },
        responses={401: {"description": "Unsigned, badly signed or stale"}},
    )
    async def hubspot(request: Request) -> Any:
        secret = settings.hubspot_client_secret
        if not secret:
            return _refused(503, HUBSPOT_SIGNATURE, "LEADPACT_FEEDBACK_HUBSPOT_CLIENT_SECRET unset")
        raw = await body_of(request)
        if raw is None:
            return _refused(413, "content-length", "body larger than 1 MiB")
        uri = str(request.url)
        if settings.public_url:
            query = f"?{request.url.query}" if request.url.query else ""
            uri = settings.public_url.rstrip("/") + request.url.path + query
        try:
            verify_hubspot(
                secret,
                request.method,
                uri,
                raw,
                _headers(request, HUBSPOT_SIGNATURE, HUBSPOT_TIMESTAMP),
                ctx.clock.now(),
                max_age,
            )
        except SignatureError as exc:
            metrics.webhooks.labels("hubspot", exc.reason).inc()
            return _refused(401, exc.header, str(exc))
        try:
            events = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": f"not JSON: {exc}", "type": "json"}]}, 422
            )
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": "a JSON array of events", "type": "type"}]},
                422,
            )
        accepted: list[recording.Recorded] = []
        skipped: list[dict[str, Any]] = []
        duplicates = 0
        async with ctx.uow() as uow:
            for event in events:
                event_id = str(event.get("eventId", ""))
                if event_id and not await uow.claim("hubspot-webhook", f"hubspot:{event_id}"):
                    duplicates += 1
                    continue
                why = await _hubspot_event(uow, event, accepted)
                if why:
                    skipped.append({"eventId": event.get("eventId"), "reason": why})
            await uow.commit()
        for done in accepted:
            recording.count(metrics, done, "hubspot")
        metrics.webhooks.labels("hubspot", "accepted").inc()
        return {"accepted": len(accepted), "duplicates": duplicates, "skipped": skipped}

    async def _hubspot_event(
        uow: Any, event: dict[str, Any], accepted: list[recording.Recorded]
    ) -> str | None:
        """Apply one HubSpot event; the reason it was skipped, if it was."""
        object_id = str(event.get("objectId", ""))
        action, args = read_hubspot_event(event, status_map)
        if action == "ignore":
            return str(args["why"])
        if not object_id:
            return "objectId: missing"
        if action == "link":
            await store.link(uow.session, "hubspot", object_id, args["lead_id"])
            return None
        link = await store.linked(uow.session, "hubspot", object_id)
        if action == "amount":
            try:
                amount = Decimal(args["amount"])
            except InvalidOperation:
                return f"amount: {args['amount']!r} is not a number"
            if link is None or not await store.set_link_amount(
                uow.session, "hubspot", object_id, amount
            ):
                return f"objectId {object_id}: not linked to a lead"
            return None
        if link is None:
            return (
                f"objectId {object_id}: not linked to a lead (POST /v1/crm-links or set the "
                f"{status_map.hubspot.link_property} property)"
            )
        mapped: Mapped = args["mapped"]
        at = None
        if isinstance(event.get("occurredAt"), int):
            at = datetime.fromtimestamp(event["occurredAt"] / 1000, tz=UTC)
        deal_amount = link.amount if mapped.type in ("won", "lost") else None
        if mapped.type == "won" and deal_amount is None:
            deal_amount = Decimal(0)
        doc = activity_from(mapped, link.lead_id, at=at, amount=deal_amount)
        try:
            activity = ACTIVITY.validate_python(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            return f"{'.'.join(str(p) for p in first['loc'][1:])}: {first['msg']}"
        result = await recording.record(uow, ctx.contracts, ctx.clock, metrics, activity)
        if isinstance(result, Problem):
            return result.message
        accepted.append(result)
        return None

    @router.post(
        "/webhooks/generic",
        status_code=202,
        summary="Generic CRM webhook, HMAC-signed (Salesforce flows, Pipedrive, in-house)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": GenericBatch.model_json_schema()}},
            }
        },
        responses={
            401: {"description": "Unsigned, badly signed or stale"},
            409: {"description": "no_response while the attempts clause is not met"},
            422: {"description": "A bad field, named by event index"},
        },
    )
    async def generic(request: Request) -> Any:
        secret = settings.webhook_secret
        if not secret:
            return _refused(503, GENERIC_SIGNATURE, "LEADPACT_FEEDBACK_WEBHOOK_SECRET unset")
        raw = await body_of(request)
        if raw is None:
            return _refused(413, "content-length", "body larger than 1 MiB")
        try:
            verify_generic(
                secret,
                raw,
                _headers(request, GENERIC_SIGNATURE, GENERIC_TIMESTAMP),
                ctx.clock.now(),
                max_age,
            )
        except SignatureError as exc:
            metrics.webhooks.labels("generic", exc.reason).inc()
            return _refused(401, exc.header, str(exc))
        try:
            batch = GenericBatch.model_validate_json(raw)
        except ValidationError as exc:
            return JSONResponse(
                {"detail": [{**e, "loc": ["body", *e["loc"]]} for e in _plain(exc)]}, 422
            )
        activities = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(batch.events):
            where = ["body", "events", index]
            mapped = status_map.generic.get(item.status)
            if mapped is None and item.status in ACTIVITY_TYPES:
                mapped = Mapped(type=item.status)  # type: ignore[arg-type]
            if mapped is None:
                known = sorted([*status_map.generic, *ACTIVITY_TYPES])
                errors.append(
                    {
                        "loc": [*where, "status"],
                        "msg": f"status: {item.status!r} is not mapped; one of {known}",
                        "type": "value_error",
                    }
                )
                continue
            doc = activity_from(
                mapped,
                item.lead_id,
                at=item.occurred_at,
                owner=item.owner,
                channel=item.channel,
                outcome=item.outcome,
                reason=item.reason,
                note=item.note,
                amount=item.amount,
                currency=item.currency,
            )
            try:
                activities.append((index, item.id, ACTIVITY.validate_python(doc)))
            except ValidationError as exc:
                errors += [{**e, "loc": [*where, *e["loc"][1:]]} for e in _plain(exc)]
        if errors:
            return JSONResponse({"detail": errors}, 422)
        recorded: list[recording.Recorded] = []
        duplicates = 0
        async with ctx.uow() as uow:
            for index, item_id, activity in activities:
                if item_id and not await uow.claim("generic-webhook", f"generic:{item_id}"):
                    duplicates += 1
                    continue
                result = await recording.record(uow, ctx.contracts, ctx.clock, metrics, activity)
                if isinstance(result, Problem):
                    metrics.webhooks.labels("generic", "refused").inc()
                    body = {
                        "detail": [
                            {
                                "loc": ["body", "events", index, result.field],
                                "msg": result.message,
                                "type": "value_error",
                            }
                        ],
                        **result.extra,
                    }
                    return JSONResponse(body, result.status)  # nothing of the batch is kept
                recorded.append(result)
            await uow.commit()
        for done in recorded:
            recording.count(metrics, done, "generic")
        metrics.webhooks.labels("generic", "accepted").inc()
        return {
            "accepted": len(recorded),
            "duplicates": duplicates,
            "event_ids": [r.event.id for r in recorded],
        }

    return router


def _plain(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]
