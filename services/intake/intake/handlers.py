"""Intake's one consumer: a person asked to be forgotten."""

from __future__ import annotations

import structlog

from intake import store
from leadpact.clock import Clock
from leadpact.events import CloudEvent, PrivacyErased
from leadpact.messaging import UnitOfWork

log = structlog.get_logger("intake.erasure")


async def on_privacy_erased(
    event: CloudEvent[PrivacyErased], uow: UnitOfWork, clock: Clock
) -> None:
    """Blank the person's leads, archived payloads and idempotency answers (the inbox makes a
    redelivery a no-op; a second erasure of the same person finds nothing left)."""
    data = event.data
    done = await store.erase_subject(uow.session, data.subject_hash, data.lead_ids, clock.now())
    log.info(
        "subject erased",
        leads=done.leads,
        raw_submissions=done.raw_submissions,
        idempotency_keys=done.idempotency_keys,
        outbox=done.outbox,
    )
