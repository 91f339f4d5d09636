"""What the HTTP routes do, each in one unit of work: apply a verified webhook event, decide
a review, undo a merge, erase a person."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from crm_sync import store
from crm_sync.billing import BillingEvent
from crm_sync.domain import RECORD_FIELDS
from crm_sync.records import (
    announce,
    forget_conflicts,
    ingest,
    merge,
    record_invoice,
    unmerge,
)
from crm_sync.runtime import Runtime
from leadpact.events import PrivacyErased
from leadpact.service import ServiceContext

WebhookResult = Literal["accepted", "duplicate", "ignored"]


class NotFound(LookupError):
    pass


class Conflicting(ValueError):
    pass


async def apply_billing_event(
    ctx: ServiceContext, crm: Runtime, provider: str, event: BillingEvent
) -> tuple[WebhookResult, str | None]:
    """Apply a verified event once (its id is claimed in the inbox); a concurrent write of
    the same person (unique email) is retried, then finds the winner's record."""
    for attempt in range(3):
        try:
            return await _apply(ctx, crm, provider, event)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _apply(
    ctx: ServiceContext, crm: Runtime, provider: str, event: BillingEvent
) -> tuple[WebhookResult, str | None]:
    async with ctx.uow() as uow:
        if not await uow.claim(f"webhook:{provider}", event.event_id):
            return "duplicate", None
        if event.ignored or event.observation is None:
            await uow.commit()
            return "ignored", None
        now = ctx.clock.now()
        customer, changed = await ingest(uow, now, event.observation, crm.resolution)
        detail: dict[str, Any] = {"source": provider, "ref": event.observation.ref}
        if event.invoice is not None:
            inv = event.invoice
            changed = await record_invoice(uow.session, customer, inv) or changed
            detail.update(
                invoice=inv.ref,
                status=inv.status,
                total=str(inv.total),
                paid=str(inv.paid),
                currency=inv.currency,
                discounts=[str(o.amount) for o in inv.offers],
            )
        entry_id = f"{provider}:{event.event_id}"[:64]
        if await uow.session.get(store.TimelineEntry, entry_id) is None:
            uow.session.add(
                store.TimelineEntry(
                    event_id=entry_id,
                    customer_id=customer.id,
                    kind=event.type,
                    occurred_at=event.occurred_at,
                    detail=detail,
                )
            )
        if changed:
            customer.updated_at = now
            await announce(uow, customer, None, crm.resolution, now)
        await uow.commit()
        crm.sync.wake()
        return "accepted", customer.id


async def decide_review(
    ctx: ServiceContext,
    crm: Runtime,
    review_id: str,
    decision: Literal["accept", "reject"],
    by: str | None,
) -> store.Review:
    async with ctx.uow() as uow:
        review = await uow.session.get(store.Review, review_id)
        if review is None:
            raise NotFound(f"review_id: no review {review_id!r}")
        if review.status != "open":
            raise Conflicting(f"review_id: already {review.status}")
        now = ctx.clock.now()
        review.decided_at, review.decided_by = now, by
        if decision == "reject":
            review.status = "rejected"
        else:
            survivor = await store.live(
                uow.session, await uow.session.get(store.Customer, review.candidate_id)
            )
            absorbed = await store.live(
                uow.session, await uow.session.get(store.Customer, review.customer_id)
            )
            if survivor is None or absorbed is None or survivor.id == absorbed.id:
                raise Conflicting("review_id: the two records are already one")
            if survivor.erased_at is not None or absorbed.erased_at is not None:
                raise Conflicting("review_id: one of the records was erased")
            row = await merge(
                uow.session, survivor, absorbed, "review", review.score, now, crm.resolution.model
            )
            review.status, review.merge_id = "accepted", row.id
            crm.metrics.merges.labels("review").inc()
            await announce(uow, survivor, None, crm.resolution, now)
            await announce(uow, absorbed, None, crm.resolution, now)
        await uow.commit()
        crm.sync.wake()
        return review


async def undo_merge(ctx: ServiceContext, crm: Runtime, merge_id: str) -> store.Merge:
    async with ctx.uow() as uow:
        row = await uow.session.get(store.Merge, merge_id)
        if row is None:
            raise NotFound(f"merge_id: no merge {merge_id!r}")
        if row.undone_at is not None:
            raise Conflicting("merge_id: already undone")
        survivor = await uow.session.get(store.Customer, row.survivor_id)
        if survivor is None or survivor.merged_into is not None:
            raise Conflicting("merge_id: the survivor was merged again; undo that merge first")
        now = ctx.clock.now()
        survivor, absorbed = await unmerge(uow.session, row, now, crm.resolution.model)
        crm.metrics.merges.labels("undo").inc()
        await announce(uow, survivor, None, crm.resolution, now)
        await announce(uow, absorbed, None, crm.resolution, now)
        await uow.commit()
        crm.sync.wake()
        return row


@dataclass(frozen=True)
class Erasure:
    subject_hash: str
    customer_id: str
    customer_ids: list[str]
    lead_ids: list[str]


def subject_hash(email_key: str) -> str:
    return hashlib.sha256(email_key.encode()).hexdigest()


async def erase_subject(ctx: ServiceContext, crm: Runtime, email_key: str) -> Erasure:
    """Remove every personal field of the person with this email from crm-sync's tables
    (golden record, source values, conflicts, blocking keys, review details, timeline
    details, offer descriptions, pending pushes), keep the bare ids and amounts, and emit
    ``privacy.erased`` for the other services in the same transaction."""
    async with ctx.uow() as uow:
        session = uow.session
        customer = await store.by_email(session, email_key)
        if customer is None:
            raise NotFound("email: no customer with this email")
        await store.lock(session, customer)
        now = ctx.clock.now()
        ids = [customer.id]
        frontier = [customer.id]
        while frontier:  # the records merged into it hold the same person's data
            query = select(store.Customer.id).where(store.Customer.merged_into.in_(frontier))
            frontier = [i for i in (await session.execute(query)).scalars() if i not in ids]
            ids += frontier
        leads: list[str] = []
        for cid in ids:
            row = await session.get(store.Customer, cid)
            assert row is not None
            for name in RECORD_FIELDS:
                setattr(row, name, None)
            row.sort_key = None
            row.sources = {k: v for k, v in (row.sources or {}).items() if k == "status"}
            row.erased_at = row.updated_at = now
            leads += await store.lead_ids(session, cid)
        for table in (store.Attribute, store.MatchKey, store.Conflict):
            await session.execute(delete(table).where(table.customer_id.in_(ids)))
        forget_conflicts(session, ids)
        involved = store.Review.customer_id.in_(ids) | store.Review.candidate_id.in_(ids)
        await session.execute(update(store.Review).where(involved).values(detail={}))
        await session.execute(
            update(store.Review)
            .where(involved, store.Review.status == "open")
            .values(status="rejected", decided_at=now, decided_by="erasure")
        )
        for entry in (
            await session.execute(
                select(store.TimelineEntry).where(store.TimelineEntry.customer_id.in_(ids))
            )
        ).scalars():
            kept = {k: v for k, v in entry.detail.items() if k in _TIMELINE_KEEP}
            entry.detail = {**kept, "erased": True}
        await session.execute(
            update(store.Offer).where(store.Offer.customer_id.in_(ids)).values(description=None)
        )
        await session.execute(
            update(store.SyncEntry)
            .where(store.SyncEntry.customer_id.in_(ids))
            .values(payload={"erased": True})
        )
        await session.flush()
        digest = subject_hash(email_key)
        uow.emit(
            PrivacyErased(
                subject_hash=digest, lead_ids=sorted(leads), customer_id=customer.id, erased_at=now
            )
        )
        await announce(uow, customer, None, crm.resolution, now)
        await uow.commit()
        crm.metrics.erasures.inc()
        crm.sync.wake()
        return Erasure(digest, customer.id, ids, sorted(leads))


# Timeline details that are ids, amounts and codes, not personal data.
_TIMELINE_KEEP = frozenset(
    {
        "lead_id",
        "source",
        "invoice",
        "status",
        "total",
        "paid",
        "currency",
        "discounts",
        "won",
        "amount",
        "channel",
        "outcome",
        "reason",
        "contacted_at",
        "accepted_at",
        "rejected_at",
    }
)
