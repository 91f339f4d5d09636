"""Thin HTTP route over the notification queue."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext
from sla_monitor.notify import store


class Notification(BaseModel):
    id: int
    lead_id: str
    kind: str
    channel: str
    recipient: str | None
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class Notifications(BaseModel):
    notifications: list[Notification]


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1",
        tags=["notifications"],
        dependencies=[Depends(require_scope(ctx.settings, "notifications:read"))],
    )

    @router.get("/notifications", summary="Queued, sent and failed notifications")
    async def notifications(
        lead: Annotated[
            str | None, Query(max_length=64, description="one lead's, oldest first")
        ] = None,
        status: Annotated[
            Literal["pending", "sent", "failed"] | None,
            Query(description="without lead: newest first, only this status"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Notifications:
        async with ctx.uow() as uow:
            if lead is not None:
                rows = await store.of_lead(uow.session, lead, limit)
                rows = [r for r in rows if status is None or r.status == status]
            else:
                rows = await store.latest(uow.session, status, limit)
            return Notifications(
                notifications=[
                    Notification(
                        id=r.id,
                        lead_id=r.lead_id,
                        kind=r.kind,
                        channel=r.channel,
                        recipient=r.recipient,
                        subject=r.subject,
                        status=r.status,
                        attempts=r.attempts,
                        next_attempt_at=r.next_attempt_at,
                        last_error=r.last_error,
                        created_at=r.created_at,
                        sent_at=r.sent_at,
                    )
                    for r in rows
                ]
            )

    return router
