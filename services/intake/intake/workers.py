"""Background work that must survive outages: fetching Meta leads from the Graph API, and
re-asking crm-sync about leads whose customer check is pending."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import orjson
import structlog

from intake import store
from intake.domain.platforms import LeadgenChange, meta_lead
from intake.graph import GraphClient, GraphUnavailable
from intake.reception import Raw, Reception
from leadpact.clock import Clock
from leadpact.events import LeadActivity
from leadpact.tasks import cancel_and_wait

log = structlog.get_logger("intake.workers")

BATCH = 50


class PollingWorker:
    """Runs ``step`` whenever woken or every ``poll`` (clock time); ``step`` returns how many
    items it handled, and a full batch means "there may be more, go again at once"."""

    def __init__(
        self, name: str, clock: Clock, poll: timedelta, step: Callable[[], Awaitable[int]]
    ) -> None:
        self.name = name
        self._clock = clock
        self._poll = poll
        self._step = step
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            try:
                handled = await self._step()
            except Exception:
                log.exception("worker round failed", worker=self.name)
                handled = 0
            if handled < BATCH:
                await self._clock.sleep_until(self._clock.now() + self._poll, self.wake)


class MetaFetcher:
    """Fetches each stored ``leadgen`` notification's lead and receives it. A Graph failure
    leaves the notification pending with a later due time (doubling, capped)."""

    def __init__(self, reception: Reception, graph: GraphClient, retry: timedelta) -> None:
        self.reception = reception
        self.graph = graph
        self.retry = retry

    async def step(self) -> int:
        ctx = self.reception.ctx
        async with ctx.db.session() as session:
            due = await store.due_meta_notifications(session, ctx.clock.now(), BATCH)
        for notification in due:
            await self._fetch(notification)
        return len(due)

    async def _fetch(self, note: store.MetaNotification) -> None:
        change = LeadgenChange(note.leadgen_id, note.form_id, note.page_id, note.ad_id)
        try:
            graph_lead = await self.graph.lead(note.leadgen_id)
        except GraphUnavailable as exc:
            await self._postpone(note.leadgen_id, str(exc))
            return
        body = orjson.dumps(graph_lead)
        raw = Raw("meta_lead", "application/json", body).with_id()
        try:
            mapped = meta_lead(graph_lead, change)
            lead = self.reception.validate(mapped.lead)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError too
            await self.reception.reject(raw, str(exc))
            await self._finish(note.leadgen_id, "rejected", None, str(exc))
            return
        received = await self.reception.receive(lead, raw, external_ref=mapped.external_ref)
        await self._finish(note.leadgen_id, "done", received.lead_id, None)

    async def _postpone(self, leadgen_id: str, error: str) -> None:
        ctx = self.reception.ctx
        async with ctx.uow() as uow:
            note = await uow.session.get(store.MetaNotification, leadgen_id)
            if note is None:
                return
            note.attempts += 1
            note.last_error = error
            note.due_at = ctx.clock.now() + self.retry * min(2 ** (note.attempts - 1), 64)
            await uow.commit()
        log.warning("Graph fetch postponed", leadgen_id=leadgen_id, error=error)

    async def _finish(
        self, leadgen_id: str, status: str, lead_id: str | None, error: str | None
    ) -> None:
        async with self.reception.ctx.uow() as uow:
            note = await uow.session.get(store.MetaNotification, leadgen_id)
            if note is not None:
                note.status = status
                note.lead_id = lead_id
                note.last_error = error
                note.attempts += 1
            await uow.commit()


class CustomerRechecker:
    """Asks crm-sync again about leads accepted while it was down, and tells the others
    with a ``lead.activity`` ("customer_check") once the answer is known."""

    def __init__(self, reception: Reception, retry: timedelta) -> None:
        self.reception = reception
        self.retry = retry

    async def step(self) -> int:
        ctx = self.reception.ctx
        async with ctx.db.session() as session:
            due = await store.due_customer_checks(session, ctx.clock.now(), BATCH)
        handled = 0
        # Asked together: the directory sends concurrent questions in one request.
        answers = await asyncio.gather(
            *(self.reception.customers.lookup(lead.email, lead.phone) for lead in due)
        )
        for lead, answer in zip(due, answers, strict=True):
            if answer is None:
                await self._postpone(lead.id, ctx.clock.now())
                continue
            await self._record(lead.id, answer.is_customer, answer.customer)
            handled += 1
        return handled if handled == len(due) else 0

    async def _postpone(self, lead_id: str, now: datetime) -> None:
        async with self.reception.ctx.uow() as uow:
            lead = await uow.session.get(store.LeadRow, lead_id)
            if lead is not None:
                lead.customer_check_due = now + self.retry
            await uow.commit()

    async def _record(self, lead_id: str, is_customer: bool, customer: object) -> None:
        ctx = self.reception.ctx
        now = ctx.clock.now()
        async with ctx.uow() as uow:
            lead = await uow.session.get(store.LeadRow, lead_id)
            if lead is None or lead.customer_check != "pending":
                return
            lead.existing_customer = is_customer
            lead.customer_check = "done"
            lead.customer_check_due = None
            detail = {"existing_customer": is_customer}
            if isinstance(customer, dict) and customer.get("customer_id"):
                detail["customer_id"] = customer["customer_id"]
            uow.emit(
                LeadActivity(
                    lead_id=lead_id, activity="customer_check", detail=detail, occurred_at=now
                ),
                ctx.contracts.current(now.date()).version,
            )
            await uow.commit()
