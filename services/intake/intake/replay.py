"""Re-running archived payloads after a mapping fix (``intake replay``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError

from intake import store
from intake.domain.lead import fingerprint
from intake.domain.platforms import Mapped, google_lead, typeform_lead, website_lead
from intake.reception import Raw, Reception


def _mapping(reception: Reception, row: store.RawSubmission) -> Callable[[], Mapped] | None:
    settings = reception.settings
    if row.channel == "google_ads":
        return lambda: google_lead(_object(row.body))
    if row.channel == "typeform":
        return lambda: typeform_lead(_object(row.body), settings.typeform_field_maps)
    if row.channel == "website":
        fields = _website_fields(row)
        fields.pop(settings.website_honeypot, None)
        return lambda: website_lead(fields, fingerprint(fields))
    if row.channel == "api":
        return lambda: Mapped(_object(row.body), "")
    return None


async def replay(reception: Reception, row: store.RawSubmission) -> str:
    """Run one archived payload again; returns its new outcome (also stored on the row)."""
    if row.channel == "meta":
        return await _requeue_meta(reception, row)
    mapping = _mapping(reception, row)
    if mapping is None:
        return f"skipped: channel {row.channel} is replayed through its notification"
    try:
        mapped = mapping()
        lead = reception.validate(mapped.lead)
    except (ValueError, ValidationError) as exc:
        await _record(reception, row.id, "rejected", None, str(exc))
        return "rejected"
    raw = Raw(row.channel, row.content_type, row.body, row.api_key_id, row.id)
    received = await reception.receive(
        lead,
        raw,
        external_ref=mapped.external_ref or None,
        is_test=mapped.is_test,
        archive=False,
    )
    await _record(reception, row.id, received.status, received.lead_id, None)
    return received.status


async def _requeue_meta(reception: Reception, row: store.RawSubmission) -> str:
    """A Meta notification is replayed by fetching its leads again."""
    ctx = reception.ctx
    async with ctx.uow() as uow:
        notes = await store.notifications_of_raw(uow.session, row.id)
        for note in notes:
            if note.status != "done":
                note.status = "pending"
                note.due_at = ctx.clock.now()
        await uow.commit()
    return f"requeued {len(notes)} leadgen id(s)"


async def _record(
    reception: Reception, raw_id: str, outcome: str, lead_id: str | None, error: str | None
) -> None:
    async with reception.ctx.uow() as uow:
        row = await uow.session.get(store.RawSubmission, raw_id)
        if row is not None:
            row.outcome = outcome
            row.lead_id = lead_id
            row.error = error
        await uow.commit()


def _object(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body: invalid JSON: {exc}") from exc


def _website_fields(row: store.RawSubmission) -> dict[str, Any]:
    if row.content_type.startswith("application/json"):
        document = _object(row.body)
        return dict(document) if isinstance(document, dict) else {}
    return dict(parse_qsl(row.body.decode(errors="replace"), keep_blank_values=True))
