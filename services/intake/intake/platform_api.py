"""Webhook routes of the ad and form platforms, each authenticated the platform's way.

A request that fails authentication gets 401 and leaves no trace; an authenticated one is
archived byte for byte before anything else is made of it.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError

from intake import store
from intake.domain.lead import fingerprint
from intake.domain.platforms import (
    Mapped,
    google_lead,
    meta_leadgen_changes,
    typeform_lead,
    website_lead,
)
from intake.domain.signatures import key_matches, meta_signature_valid, typeform_signature_valid
from intake.guard import GuardedRoute, read_body
from intake.openapi import body
from intake.platform_docs import (
    GOOGLE_EXAMPLE,
    META_EXAMPLE,
    TYPEFORM_EXAMPLE,
    WEBSITE_EXAMPLE,
    GoogleLeadBody,
    MetaNotificationBody,
    TypeformBody,
    WebsiteForm,
)
from intake.reception import Raw, validation_problems
from intake.runtime import Runtime
from leadpact.service import ServiceContext


class WebhookAnswer(BaseModel):
    lead_id: str | None = None
    status: str


class MetaReceived(BaseModel):
    leadgen_ids: list[str]
    status: str = "queued"


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Signature or key missing or wrong; nothing is stored"},
    413: {"description": "Body larger than the limit"},
    415: {"description": "Content-Type not accepted"},
    422: {"description": "The payload does not have the platform's shape (field named)"},
    503: {"description": "This platform's secret is not configured"},
}


def build_platform_router(ctx: ServiceContext, parts: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1/platforms", tags=["platforms"], route_class=GuardedRoute)
    settings = parts.settings
    reception = parts.reception

    async def take(mapped: Mapped, raw: Raw) -> WebhookAnswer:
        try:
            lead = reception.validate(mapped.lead)
        except ValidationError as exc:
            await reception.reject(raw, str(exc))
            raise RequestValidationError(validation_problems(exc)) from None
        received = await reception.receive(
            lead, raw, external_ref=mapped.external_ref, is_test=mapped.is_test
        )
        return WebhookAnswer(lead_id=received.lead_id, status=received.status)

    @router.get(
        "/meta/webhook",
        summary="Meta: subscription verification",
        description="Meta calls this once when the webhook is subscribed; answers "
        "`hub.challenge` when `hub.verify_token` matches the configured token.",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, 403: {"description": "Wrong token"}},
    )
    async def meta_verify(
        mode: Annotated[str, Query(alias="hub.mode")],
        verify_token: Annotated[str, Query(alias="hub.verify_token")],
        challenge: Annotated[str, Query(alias="hub.challenge", max_length=200)],
    ) -> Response:
        if mode != "subscribe" or not key_matches(settings.meta_verify_token, verify_token):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "hub.verify_token: does not match")
        return Response(challenge, media_type="text/plain")

    @router.post(
        "/meta/webhook",
        response_model=MetaReceived,
        summary="Meta Lead Ads: leadgen notification",
        description="Checks `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the app "
        "secret), stores each `leadgen_id`, and answers at once; a worker then fetches the "
        "lead's `field_data` from the Graph API, retrying while the Graph API is down.",
        openapi_extra=body(("application/json", MetaNotificationBody), example=META_EXAMPLE),
        responses=AUTH_ERRORS,
    )
    async def meta_notification(request: Request) -> MetaReceived:
        _configured(settings.meta_app_secret, "meta_app_secret")
        raw_body = await read_body(request)
        if not meta_signature_valid(
            settings.meta_app_secret, raw_body, request.headers.get("x-hub-signature-256")
        ):
            raise _unauthorized("X-Hub-Signature-256")
        raw = Raw("meta", "application/json", raw_body).with_id()
        try:
            changes = meta_leadgen_changes(_object(raw_body))
        except ValueError as exc:
            await reception.reject(raw, str(exc))
            raise _unprocessable(exc) from None
        await _queue_meta(ctx, raw, changes)
        parts.meta_worker.wake.set()
        return MetaReceived(leadgen_ids=[c.leadgen_id for c in changes])

    @router.post(
        "/google-ads/leads",
        response_model=WebhookAnswer,
        summary="Google Ads lead form webhook",
        description="Checks `google_key` against the configured key; maps "
        "`user_column_data` by `column_id`. Test leads (`is_test`) are stored apart "
        "(`status: test`) and never announced. The same `lead_id` twice is one lead.",
        openapi_extra=body(("application/json", GoogleLeadBody), example=GOOGLE_EXAMPLE),
        responses=AUTH_ERRORS,
    )
    async def google_ads(request: Request) -> WebhookAnswer:
        _configured(settings.google_key, "google_key")
        raw_body = await read_body(request)
        payload = _object(raw_body)
        if not key_matches(settings.google_key, _str(payload.get("google_key"))):
            raise _unauthorized("google_key")
        raw = Raw("google_ads", "application/json", raw_body).with_id()
        mapped = await _mapped(reception, raw, lambda: google_lead(payload))
        return await take(mapped, raw)

    @router.post(
        "/typeform/webhook",
        response_model=WebhookAnswer,
        summary="Typeform webhook",
        description="Checks `Typeform-Signature` (`sha256=` + base64 HMAC-SHA256 of the raw "
        "body with the webhook secret); maps answers through the form's field map "
        "(`LEADPACT_INTAKE_TYPEFORM_FIELD_MAPS`). The same response token twice is one lead.",
        openapi_extra=body(("application/json", TypeformBody), example=TYPEFORM_EXAMPLE),
        responses=AUTH_ERRORS,
    )
    async def typeform(request: Request) -> WebhookAnswer:
        _configured(settings.typeform_secret, "typeform_secret")
        raw_body = await read_body(request)
        if not typeform_signature_valid(
            settings.typeform_secret, raw_body, request.headers.get("typeform-signature")
        ):
            raise _unauthorized("Typeform-Signature")
        raw = Raw("typeform", "application/json", raw_body).with_id()
        payload = _object(raw_body)
        mapped = await _mapped(
            reception, raw, lambda: typeform_lead(payload, settings.typeform_field_maps)
        )
        return await take(mapped, raw)

    @router.post(
        "/website/forms",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=WebhookAnswer,
        summary="Website form",
        description="Takes `application/x-www-form-urlencoded` or JSON from a site in the "
        "origin allow-list (`LEADPACT_INTAKE_WEBSITE_ORIGINS`). A filled honeypot field "
        "(`LEADPACT_INTAKE_WEBSITE_HONEYPOT`) is answered like a success and stored nowhere.",
        openapi_extra=body(
            ("application/x-www-form-urlencoded", WebsiteForm),
            ("application/json", WebsiteForm),
            example=WEBSITE_EXAMPLE,
        ),
        responses={403: {"description": "Origin not in the allow-list"}, **AUTH_ERRORS},
    )
    async def website(request: Request) -> WebhookAnswer:
        _check_origin(request, settings.website_origins)
        raw_body = await read_body(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields = _form_fields(raw_body, media)
        if str(fields.pop(settings.website_honeypot, "") or "").strip():
            return WebhookAnswer(status="accepted")
        raw = Raw("website", media, raw_body).with_id()
        mapped = await _mapped(reception, raw, lambda: website_lead(fields, fingerprint(fields)))
        return await take(mapped, raw)

    return router


async def _queue_meta(ctx: ServiceContext, raw: Raw, changes: list[Any]) -> None:
    """Archive the notification and queue its leadgen ids in one transaction; ids already
    queued (Meta retries) are left as they are."""
    now = ctx.clock.now()
    async with ctx.uow() as uow:
        uow.session.add(
            store.RawSubmission(
                id=raw.id,
                channel=raw.channel,
                content_type=raw.content_type,
                body=raw.body,
                received_at=now,
                outcome="pending",
            )
        )
        for change in {c.leadgen_id: c for c in changes}.values():
            if await uow.session.get(store.MetaNotification, change.leadgen_id) is None:
                uow.session.add(
                    store.MetaNotification(
                        leadgen_id=change.leadgen_id,
                        form_id=change.form_id,
                        page_id=change.page_id,
                        ad_id=change.ad_id,
                        raw_id=raw.id,
                        received_at=now,
                        status="pending",
                        attempts=0,
                        due_at=now,
                    )
                )
        # A concurrent retry of this notification may have queued the same ids first.
        with contextlib.suppress(IntegrityError):
            await uow.commit()


async def _mapped(reception: Any, raw: Raw, mapping: Any) -> Mapped:
    try:
        result: Mapped = mapping()
    except ValueError as exc:
        await reception.reject(raw, str(exc))
        raise _unprocessable(exc) from None
    return result


def _object(raw_body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": f"invalid JSON: {exc}", "type": "json_invalid"}]
        ) from None
    if not isinstance(document, dict):
        raise RequestValidationError(
            [{"loc": ["body"], "msg": "expected a JSON object", "type": "dict_type"}]
        )
    return document


def _form_fields(raw_body: bytes, media: str) -> dict[str, Any]:
    if media == "application/json":
        return dict(_object(raw_body))
    try:
        text = raw_body.decode()
    except UnicodeDecodeError:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": "form body is not UTF-8", "type": "value_error"}]
        ) from None
    return dict(parse_qsl(text, keep_blank_values=True))


def _check_origin(request: Request, allowed: list[str]) -> None:
    if not allowed:
        return
    origin = request.headers.get("origin")
    if origin is None and (referer := request.headers.get("referer")):
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Origin: {origin!r} not allowed")


def _configured(secret: str, name: str) -> None:
    if not secret:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{name}: not configured (LEADPACT_INTAKE_{name.upper()})",
        )


def _unauthorized(what: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"{what}: missing or wrong")


def _unprocessable(exc: ValueError) -> RequestValidationError:
    return RequestValidationError([{"loc": ["body"], "msg": str(exc), "type": "value_error"}])


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
