"""Receiving one submission: archive it, tell a new lead from a retry or a resubmission,
ask whether the person is a customer, store the lead and its event in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.schema import Table

from intake import store
from intake.customers import CustomerAnswer, CustomerDirectory
from intake.domain.erasure import subject_hash
from intake.domain.lead import LeadIn, lead_created
from intake.domain.resubmission import resubmission_since
from intake.group_commit import GroupCommit, HeldConnection, HeldUnitOfWork, Scratch
from intake.settings import IntakeSettings
from leadpact.events import LeadActivity, LeadCreated
from leadpact.messaging import UnitOfWork, outbox
from leadpact.service import ServiceContext

Status = Literal["accepted", "resubmitted", "duplicate", "test"]


@dataclass(frozen=True)
class Raw:
    """A payload as it arrived, before anything is made of it."""

    channel: str
    content_type: str
    body: bytes
    api_key_id: str | None = None
    id: str = ""

    def with_id(self) -> Raw:
        if self.id:
            return self
        return Raw(self.channel, self.content_type, self.body, self.api_key_id, str(uuid.uuid4()))


@dataclass(frozen=True)
class Received:
    lead_id: str
    status: Status


@dataclass(frozen=True)
class IdempotentRequest:
    key: str
    fingerprint: str


class Reception:
    """The one way a lead gets in, whatever route or worker it came through."""

    def __init__(
        self, ctx: ServiceContext, settings: IntakeSettings, customers: CustomerDirectory
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.customers = customers
        self.window = timedelta(seconds=settings.resubmission_window_seconds)
        self.held = HeldConnection(ctx.db, ctx.clock, ctx.name, on_commit=ctx.relay.wake)
        self.writer: GroupCommit[Received] = (
            GroupCommit(self._uow, self._people, _write_staged)
            if ctx.db.is_sqlite  # one connection per file, shared by all: cannot be held
            else GroupCommit(self.held.begin, self._people, self._write_at_once)
        )

    async def close(self) -> None:
        await self.held.close()

    def validate(self, data: Any) -> LeadIn:
        """Clean and check a mapped payload; raises pydantic's ValidationError."""
        return LeadIn.model_validate(data, context={"default_region": self.settings.default_region})

    async def receive(
        self,
        lead: LeadIn,
        raw: Raw,
        *,
        external_ref: str | None = None,
        is_test: bool = False,
        idempotent: IdempotentRequest | None = None,
        archive: bool = True,
    ) -> Received:
        """Store ``lead`` as a new lead, or as a resubmission of a recent one, or recognise
        it as a platform's retry. One transaction, which also records the idempotency
        answer, the archive row and the event."""
        raw = raw.with_id()
        if external_ref is not None:
            known = await self._by_ref(external_ref)
            if known is not None:
                if archive:
                    await self._archive(raw, "duplicate", lead_id=known)
                return Received(known, "duplicate")
        # Asked before the transaction so that no connection waits on crm-sync; a
        # resubmission wastes this one lookup, which is rare and cheap.
        answer = None
        if self.settings.customer_check and not is_test:
            answer = await self.customers.lookup(lead.email, lead.phone)

        ref_key = _ref_key(external_ref) if external_ref is not None else None

        async def work(uow: UnitOfWork, scratch: Scratch) -> Received:
            if ref_key is not None and ref_key in scratch:
                # Retried while its first delivery was being written: same lead.
                known = str(scratch[ref_key])
                if archive:
                    _stage(
                        scratch,
                        store.RawSubmission,
                        _raw_row(raw, self.ctx.clock.now(), "duplicate", known),
                    )
                return Received(known, "duplicate")
            previous = None if is_test else await self._recent_lead(uow, scratch, lead)
            if previous is not None:
                if external_ref is not None:
                    _remember_ref(scratch, external_ref, previous, self.ctx.clock.now())
                received = self._resubmitted(uow, scratch, previous, lead, raw, idempotent, archive)
            else:
                received = self._new(
                    uow, scratch, lead, raw, external_ref, is_test, idempotent, archive, answer
                )
                if not is_test:
                    scratch.update(
                        {who: received.lead_id for who in (lead.email, lead.phone) if who}
                    )
            if ref_key is not None:
                scratch[ref_key] = received.lead_id
            return received

        try:
            people = set() if is_test else {w for w in (lead.email, lead.phone) if w}
            keys = frozenset(people | ({ref_key} if ref_key else set()))
            return await self.writer.run(work, keys)
        except IntegrityError:
            # A concurrent retry of the same platform submission won the race.
            known = await self._by_ref(external_ref) if external_ref else None
            if known is None:
                raise
            return Received(known, "duplicate")

    async def reject(self, raw: Raw, error: str) -> str:
        """Archive a payload we could not read, so a mapping fix can replay it."""
        raw = raw.with_id()
        await self._archive(raw, "rejected", error=error)
        return raw.id

    def _new(
        self,
        uow: UnitOfWork,
        scratch: Scratch,
        lead: LeadIn,
        raw: Raw,
        external_ref: str | None,
        is_test: bool,
        idempotent: IdempotentRequest | None,
        archive: bool,
        answer: CustomerAnswer | None,
    ) -> Received:
        lead_id = str(uuid.uuid4())
        now = self.ctx.clock.now()
        checked = answer is not None or not self.settings.customer_check or is_test
        event = lead_created(
            lead_id,
            lead,
            now,
            existing_customer=answer.is_customer if answer is not None else None,
            customer_lead_ids=answer.lead_ids() if answer is not None else None,
            raw_ref=f"raw:{raw.id}",
        )
        status: Status = "test" if is_test else "accepted"
        _stage(
            scratch,
            store.LeadRow,
            _lead_row(event, now, external_ref, is_test, raw.id, checked, self._retry_at(now)),
        )
        if archive:
            _stage(scratch, store.RawSubmission, _raw_row(raw, now, status, lead_id))
        if idempotent is not None:
            _remember(scratch, idempotent, lead_id, status, now)
        if not is_test:
            uow.emit(event, self._contract_version(now))
        return Received(lead_id, status)

    def _resubmitted(
        self,
        uow: UnitOfWork,
        scratch: Scratch,
        previous: str,
        lead: LeadIn,
        raw: Raw,
        idempotent: IdempotentRequest | None,
        archive: bool,
    ) -> Received:
        now = self.ctx.clock.now()
        detail = {
            "raw_ref": f"raw:{raw.id}",
            "channel": raw.channel,
            "source": lead.source.model_dump(exclude_none=True),
        }
        if archive:
            _stage(scratch, store.RawSubmission, _raw_row(raw, now, "resubmitted", previous))
        if idempotent is not None:
            _remember(scratch, idempotent, previous, "resubmitted", now)
        uow.emit(
            LeadActivity(lead_id=previous, activity="resubmitted", detail=detail, occurred_at=now),
            self._contract_version(now),
        )
        return Received(previous, "resubmitted")

    async def _archive(
        self, raw: Raw, outcome: str, *, lead_id: str | None = None, error: str | None = None
    ) -> None:
        now = self.ctx.clock.now()
        async with self.ctx.uow() as uow:
            uow.session.add(store.RawSubmission(**_raw_row(raw, now, outcome, lead_id, error)))
            await uow.commit()

    async def _by_ref(self, ref: str) -> str | None:
        """The lead a platform submission already became: a new lead carries the ref; a
        resubmission left it in the idempotency keys (so a retry is not a second activity)."""
        async with self.ctx.db.session() as session:
            row = await store.lead_by_external_ref(session, ref)
            if row is not None:
                return row.id
            absorbed = await store.get_idempotency_key(session, _ref_key(ref))
        return absorbed.lead_id if absorbed is not None else None

    async def _people(self, uow: UnitOfWork, keys: set[str]) -> Scratch:
        """Every person of a transaction's submissions → their lead within the window, and
        every platform ref → the lead it became; read before anything is added."""
        refs = {k for k in keys if k.startswith(REF_PREFIX)}
        since = resubmission_since(self.ctx.clock.now(), self.window)
        if isinstance(uow, HeldUnitOfWork):  # PostgreSQL: on the driver connection
            scratch: Scratch = dict(
                await store.recent_leads_of_people_raw(uow.driver, keys - refs, since)
            )
            scratch.update(await store.leads_of_refs_raw(uow.driver, refs, REF_PREFIX))
            return scratch
        scratch = dict(await store.recent_leads_of_people(uow.session, keys - refs, since))
        scratch.update(await store.leads_of_refs(uow.session, refs, REF_PREFIX))
        return scratch

    async def _recent_lead(self, uow: UnitOfWork, scratch: Scratch, lead: LeadIn) -> str | None:
        """The lead this person became within the window: in the database (prefetched)
        or earlier in this same transaction; both are in ``scratch``."""
        for who in (lead.email, lead.phone):
            if who and who in scratch:
                return str(scratch[who])
        return None

    async def _uow(self) -> UnitOfWork:
        return self.ctx.uow()

    async def _write_at_once(self, uow: UnitOfWork, scratch: Scratch) -> None:
        """PostgreSQL: every row of the transaction, and its events' outbox rows, in one
        statement on the held autocommit connection (atomic by itself, durable when it
        returns). The unit of work is left nothing to write; the relay is woken after."""
        rows: dict[Table, list[dict[str, Any]]] = {
            model.__table__: staged for model, staged in scratch.get(STAGED, {}).items()
        }
        if uow.emitted:
            rows[outbox] = [
                {
                    "event_id": e.id,
                    "topic": e.topic,
                    "key": e.subject,
                    "payload": e.to_json(),
                    "created_at": e.time,
                }
                for e in uow.emitted
            ]
            uow.emitted.clear()
            uow.after_commit(self.ctx.relay.wake)
        assert isinstance(uow, HeldUnitOfWork)
        await store.insert_together(uow.driver, uow.dialect, rows)

    def _retry_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.customer_check_retry_seconds)

    def _contract_version(self, now: datetime) -> str:
        return self.ctx.contracts.current(now.date()).version


def validation_problems(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI shows them (``loc`` starting with ``body``)."""
    return [
        {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]


def _remember(
    scratch: Scratch, idempotent: IdempotentRequest, lead_id: str, status: str, now: datetime
) -> None:
    _stage(
        scratch,
        store.IdempotencyKey,
        {
            "key": idempotent.key,
            "fingerprint": idempotent.fingerprint,
            "lead_id": lead_id,
            "created_at": now,
            "status_code": 202,
            "response": {"lead_id": lead_id, "status": status},
        },
    )


REF_PREFIX = "ref:"


def _ref_key(external_ref: str) -> str:
    return f"{REF_PREFIX}{external_ref}"[:255]


def _remember_ref(scratch: Scratch, external_ref: str, lead_id: str, now: datetime) -> None:
    _stage(
        scratch,
        store.IdempotencyKey,
        {
            "key": _ref_key(external_ref),
            "fingerprint": "",
            "lead_id": lead_id,
            "created_at": now,
            "status_code": 202,
            "response": {"lead_id": lead_id, "status": "resubmitted"},
        },
    )


STAGED = "staged rows"


def _stage(scratch: Scratch, model: type[store.Base], values: dict[str, Any]) -> None:
    """Rows of one table are inserted together when the transaction ends: one Core
    executemany per table (asyncpg sends it in one round trip), not an ORM object each and
    not the ORM's bulk insert, which still visits every row in Python."""
    scratch.setdefault(STAGED, {}).setdefault(model, []).append(values)


async def _write_staged(uow: UnitOfWork, scratch: Scratch) -> None:
    for model, rows in scratch.get(STAGED, {}).items():
        await uow.session.execute(insert(model.__table__), rows)


def _raw_row(
    raw: Raw, now: datetime, outcome: str, lead_id: str | None, error: str | None = None
) -> dict[str, Any]:
    return {
        "id": raw.id,
        "channel": raw.channel,
        "content_type": raw.content_type[:200],
        "body": raw.body,
        "received_at": now,
        "outcome": outcome,
        "error": error,
        "lead_id": lead_id,
        "api_key_id": raw.api_key_id,
    }


def _lead_row(
    event: LeadCreated,
    now: datetime,
    external_ref: str | None,
    is_test: bool,
    raw_id: str,
    checked: bool,
    retry_at: datetime,
) -> dict[str, Any]:
    data = event.model_dump(mode="json", include={"source", "consent", "attributes"})
    return {
        "id": event.lead_id,
        "email": event.email,
        "email_hash": subject_hash(event.email),
        "phone": event.phone,
        "first_name": event.first_name,
        "last_name": event.last_name,
        "company": event.company,
        "title": event.title,
        "company_size": event.company_size,
        "industry": event.industry,
        "country": event.country,
        "source": data["source"],
        "consent": data["consent"],
        "attributes": data["attributes"],
        "created_at": now,
        "external_ref": external_ref,
        "is_test": is_test,
        "existing_customer": event.existing_customer,
        "customer_check": "done" if checked else "pending",
        "customer_check_due": None if checked else retry_at,
        "raw_id": raw_id,
    }
