"""The golden record kept in the database: one source record in (resolve → link → survive →
announce), invoices and their offers, merges and un-merges with their history.

The rules themselves are pure (:mod:`crm_sync.matching`, :mod:`crm_sync.survivorship`);
this module applies them to the store inside the caller's unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_sync import store
from crm_sync.billing import InvoiceFact
from crm_sync.domain import RECORD_FIELDS, Observation
from crm_sync.matching import (
    CUSTOMER_MODEL,
    PREPARE,
    MatchModel,
    Prepared,
    Score,
    best_index,
)
from crm_sync.metrics import CrmMetrics
from crm_sync.survivorship import Candidate, FieldConflict, Survivor, survive
from crm_sync.sync import enqueue
from leadpact.db import core_connection, core_execute
from leadpact.events import CloudEvent, CustomerUpdated
from leadpact.messaging import UnitOfWork


@dataclass
class Resolution:
    """How crm-sync resolves and announces: the match model, limits, sync targets."""

    model: MatchModel = CUSTOMER_MODEL
    candidates: int = 50
    window: int = 3
    sync_targets: tuple[str, ...] = ()
    auto_merge_leads: bool = False
    metrics: CrmMetrics | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def count(self, uow: UnitOfWork, decision: str) -> None:
        """Count a match decision once ``uow`` commits: a retried handler, or a consumer
        batch that rolls back and is handled one by one, counts each decision once."""
        if self.metrics is not None:
            uow.after_commit(self.metrics.matches.labels(decision).inc)

    def merged(self, uow: UnitOfWork, kind: str) -> None:
        """Count a merge once ``uow`` commits (see :meth:`count`)."""
        if self.metrics is not None:
            uow.after_commit(self.metrics.merges.labels(kind).inc)


def new_customer(now: datetime) -> store.Customer:
    return store.Customer(
        id=str(uuid.uuid4()),
        status="lead",
        sources={},
        lifetime_value=Decimal(0),
        created_at=now,
        updated_at=now,
    )


def match_record(values: Mapping[str, Any]) -> dict[str, str | None]:
    """What the matcher compares: the person's fields, the legal name standing in for a
    missing company name."""
    record = {name: values.get(name) for name in RECORD_FIELDS}
    record["company"] = record.get("company") or record.get("legal_name")
    return record


def golden(customer: store.Customer) -> dict[str, Any]:
    return {name: getattr(customer, name) for name in RECORD_FIELDS}


async def ingest(
    uow: UnitOfWork,
    now: datetime,
    obs: Observation,
    resolution: Resolution,
    *,
    lead_id: str | None = None,
) -> tuple[store.Customer, bool]:
    """Attach what ``obs`` says to the customer it belongs to (found by its link, by a
    deterministic key, or by probabilistic matching; a new customer otherwise). Returns the
    customer and whether its golden record changed (the caller announces it)."""
    session = uow.session
    await store.lock_keys(
        session, [f"{k}:{obs.fields[k]}" for k in ("email", "phone", "tax_id") if k in obs.fields]
    )
    if lead_id is not None:
        customer = await store.by_lead(session, lead_id)
    else:
        customer = await store.by_ref(session, obs.ref)
    # Not linked yet: neither the link row nor any value of this source record exists (both
    # are written together below, and merges move them together), so neither is looked up.
    linked = customer is not None
    created = False
    duplicate: store.Customer | None = None
    if customer is not None:
        # Linked already (e.g. a placeholder made by an event that overtook lead.created):
        # a different record holding the same key is the same person.
        await store.lock(session, customer)
        other = await _deterministic(session, obs)
        if other is not None and other.id != customer.id and other.erased_at is None:
            duplicate = other
    else:
        customer = await _deterministic(session, obs)
        if customer is not None:
            resolution.count(uow, "key")
            await store.lock(session, customer)
    score: Score | None = None
    candidate: str | None = None
    if customer is None:
        customer, created = new_customer(now), True
        # Matched before the new record is written, so the candidates' query has nothing
        # to flush (the record cannot be its own candidate: it is not in the table yet).
        candidate, score = await _probabilistic(session, obs, resolution)
        session.add(customer)
    if lead_id is not None and not linked:
        session.add(store.CustomerLead(lead_id=lead_id, customer_id=customer.id))
    elif lead_id is None and not linked:
        session.add(
            store.SourceRecord(ref=obs.ref, system=obs.system, customer_id=customer.id, seen_at=now)
        )
    if customer.erased_at is not None:
        # The person asked to be forgotten: a source that still sends their record links
        # to the bare id (invoices still count) but no personal value is stored again.
        await session.flush()
        return customer, False
    if created:
        # A new record holds only this observation: its golden values are computed from it
        # before the row is written (one INSERT, no UPDATE), nothing is read back.
        await refresh(session, customer, resolution.model, observed=candidates_of(obs))
        await _observe(session, customer.id, obs, fresh=True)
        changed = True
    else:
        await _observe(session, customer.id, obs, fresh=not linked)
        changed = await refresh(session, customer, resolution.model)
    if duplicate is not None:
        survivor, absorbed = sorted(
            (customer, duplicate), key=lambda c: (aware(c.created_at), c.id)
        )
        await merge(session, survivor, absorbed, "key", None, now, resolution.model)
        resolution.count(uow, "key")
        resolution.merged(uow, "key")
        customer, changed = survivor, True
    if candidate is not None and score is not None:
        if score.decision == "match":
            resolution.count(uow, "match")
            resolution.merged(uow, "auto")
            found = await session.get(store.Customer, candidate)
            assert found is not None  # read in this transaction, under the same locks
            await merge(session, found, customer, "auto", score.weight, now, resolution.model)
            customer, changed = found, True
        else:
            resolution.count(uow, "review")
            await core_execute(
                session, store.INSERT_REVIEW, review_row(customer.id, candidate, score, now)
            )
    elif created:
        resolution.count(uow, "new")
    if changed:
        customer.updated_at = now
    await session.flush()
    return customer, changed


async def _deterministic(session: AsyncSession, obs: Observation) -> store.Customer | None:
    """The same normalised email, else E.164 phone, else tax id (one query)."""
    f = obs.fields
    return await store.by_identity(session, f.get("email"), f.get("phone"), f.get("tax_id"))


async def _probabilistic(
    session: AsyncSession, obs: Observation, resolution: Resolution
) -> tuple[str | None, Score | None]:
    """The best candidate's id for a record being created from ``obs``, found by blocking
    keys and sorted neighbourhood, when its score reaches the review band.

    A pair a person rejected is never proposed again: a record is matched only when it is
    created (a source record seen before is linked, never re-matched), and nobody can have
    rejected a pair with a record that did not exist yet."""
    model = resolution.model
    record = match_record(obs.fields)
    nearby = await store.candidates(
        session,
        sorted(model.keys(record)),
        model.sort_key(record),
        resolution.candidates,
        resolution.window,
    )
    return choose(record, obs.system, pool(nearby), resolution)


def pool(nearby: store.Nearby) -> list[store.CandidateRow]:
    """The candidates to score, in a fixed order (blocking partners by id, then the
    neighbours below and above, nearest first): each once, erased records left out. The
    order decides ties: the first of equally good candidates wins."""
    kept: dict[str, store.CandidateRow] = {}
    for row in (*nearby.keyed, *nearby.below, *nearby.above):
        if row.id not in kept and row.erased_at is None:
            kept[row.id] = row
    return list(kept.values())


def choose(
    record: Mapping[str, str | None],
    system: str,
    candidates: Sequence[store.CandidateRow],
    resolution: Resolution,
    prepared: dict[str, Prepared] | None = None,
) -> tuple[str | None, Score | None]:
    """The best of ``candidates`` for ``record`` and its score, unless it is a non-match.
    Pure: the one-by-one and the batch paths decide with it (``prepared``: see
    :func:`prepared_rows`)."""
    if not candidates:
        return None, None
    model = resolution.model
    # Each candidate prepared straight from its row's columns (what ``match_record`` of the
    # row would give the comparisons), scored a field at a time; only the best one becomes
    # a record, to be scored in full.
    n = best_index(model, model.prepare(record), prepared_rows(model, candidates, prepared))
    assert n is not None  # there are candidates
    best = candidates[n]
    score = model.score(record, match_record(best._asdict()))
    if score.decision == "non_match":
        return None, None
    lead_pair = system == "lead" and not best.beyond_leads
    if score.decision == "match" and lead_pair and not resolution.auto_merge_leads:
        # Two form fills with different emails and phones (intake already folds the same
        # email or phone into one lead): a person decides, never the matcher alone.
        score = replace(score, decision="review")
    return best.id, score


def review_row(customer_id: str, candidate: str, score: Score, now: datetime) -> dict[str, Any]:
    """An open review of the pair (new record, its best candidate)."""
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "candidate_id": candidate,
        "score": score.weight,
        "detail": score.detail,
        "status": "open",
        "created_at": now,
        "decided_at": None,
        "decided_by": None,
        "merge_id": None,
    }


def prepared_rows(
    model: MatchModel, rows: Sequence[Any], known: dict[str, Prepared] | None = None
) -> list[Prepared]:
    """``model.prepare(match_record(row._asdict()))`` of each candidate row (named columns
    of :data:`store.MATCH_COLUMNS`), read straight from the row's columns: the same values
    without building a dict and a record per candidate.

    ``known``: rows prepared before, by id (the leads of a batch share most candidates;
    the caller keeps it for rows of one read, with this model)."""
    if not rows:
        return []
    if known is not None:
        missing = [row for row in rows if row.id not in known]
        known.update(zip((row.id for row in missing), prepared_rows(model, missing), strict=True))
        return [known[row.id] for row in rows]
    columns = {name: i for i, name in enumerate(rows[0]._fields)}
    legal_name = columns["legal_name"]
    steps = [
        (
            PREPARE[c.prepare],
            columns[c.field] if c.field in RECORD_FIELDS else None,
            c.field == "company",  # match_record: the legal name stands in for a missing one
        )
        for c in model.comparisons
    ]
    return [
        tuple(
            fn(None if at is None else (row[at] or row[legal_name]) if is_company else row[at])
            for fn, at, is_company in steps
        )
        for row in rows
    ]


def candidates_of(obs: Observation) -> list[Candidate]:
    observed = aware(obs.observed_at)
    return [
        Candidate(name, value, obs.system, obs.ref, name in obs.verified, observed)
        for name, value in obs.fields.items()
    ]


async def _observe(
    session: AsyncSession, customer_id: str, obs: Observation, *, fresh: bool
) -> None:
    """Upsert this source's value of each field; an older observation never replaces a
    newer one of the same source record (webhooks arrive out of order). ``fresh``: the
    source record is new to crm-sync, so it has no earlier value to compare with."""
    existing = {} if fresh else {a.field: a for a in await store.attributes_of(session, obs.ref)}
    new = []
    for name, value in obs.fields.items():
        row = existing.get(name)
        if row is None:
            new.append(attribute_row(customer_id, obs, name))
        elif aware(obs.observed_at) >= aware(row.observed_at):
            row.value, row.verified, row.observed_at = value, name in obs.verified, obs.observed_at
    await session.flush()  # the customer row first (foreign key)
    if new:
        await (await core_connection(session)).insert_rows(store.TABLES["customer_attributes"], new)


def attribute_row(customer_id: str, obs: Observation, name: str) -> dict[str, Any]:
    """The row of what ``obs`` says of field ``name``."""
    return {
        "customer_id": customer_id,
        "field": name,
        "value": obs.fields[name],
        "system": obs.system,
        "ref": obs.ref,
        "verified": name in obs.verified,
        "observed_at": obs.observed_at,
    }


def timeline_row(
    event: CloudEvent[Any], customer_id: str, occurred_at: datetime, detail: dict[str, Any]
) -> dict[str, Any]:
    """The customer's timeline entry for ``event``."""
    return {
        "event_id": event.id,
        "customer_id": customer_id,
        "kind": event.topic,
        "occurred_at": occurred_at,
        "detail": {"lead_id": event.subject, **detail},
    }


def aware(when: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored in UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_CONFLICTS_KEY = "crm_sync.conflicts"


def _known_conflicts(session: AsyncSession) -> dict[str, list[dict[str, Any]]]:
    """The conflicts :func:`refresh` wrote in this unit of work, by customer id, so that
    :func:`announce` does not read back what was just written. Whatever else deletes
    conflict rows forgets them here (:func:`forget_conflicts`)."""
    known: dict[str, list[dict[str, Any]]] = session.info.setdefault(_CONFLICTS_KEY, {})
    return known


def forget_conflicts(session: AsyncSession, customer_ids: list[str]) -> None:
    known = _known_conflicts(session)
    for customer_id in customer_ids:
        known.pop(customer_id, None)


async def refresh(
    session: AsyncSession,
    customer: store.Customer,
    model: MatchModel,
    *,
    observed: list[Candidate] | None = None,
) -> bool:
    """Recompute the golden record from its candidates: survivors, provenance, conflicts,
    blocking keys. True when a golden value changed.

    ``observed``: a record being created, made only of these candidates; nothing of it is
    in the database yet (no stored candidates, keys or conflicts to read or replace, and no
    other record holds its email: the deterministic lookup found none)."""
    new = observed is not None
    if observed is None:
        candidates = [
            Candidate(a.field, a.value, a.system, a.ref, a.verified, aware(a.observed_at))
            for a in await store.attributes(session, customer.id)
        ]
    else:
        candidates = observed
    chosen, conflicts, values = survivors(candidates)
    changed = False
    email = values.get("email")
    if (
        not new
        and email
        and email != customer.email
        and await store.email_holder(session, email, customer.id) is not None
    ):  # another record holds it: keep ours until they are merged
        values["email"] = customer.email
    for name, value in values.items():
        if getattr(customer, name) != value:
            setattr(customer, name, value)
            changed = True
    extra = {k: v for k, v in (customer.sources or {}).items() if k not in RECORD_FIELDS}
    customer.sources = {**extra, **{name: s.ref for name, s in chosen.items()}}
    record = match_record(values)
    customer.sort_key = model.sort_key(record)[:200] or None
    await session.flush()  # the customer row first (foreign keys)
    if not new:
        await core_execute(session, store.DELETE_CONFLICTS, {"id": customer.id})
        await core_execute(session, store.DELETE_MATCH_KEYS, {"id": customer.id})
    now = max((c.observed_at for c in candidates), default=customer.updated_at)
    rows = conflict_rows(customer.id, conflicts, now)
    if rows:
        await (await core_connection(session)).insert_rows(store.TABLES["conflicts"], rows)
    remember_conflicts(session, customer.id, rows)
    keys = key_rows(customer.id, model, record)
    if keys:
        await (await core_connection(session)).insert_rows(store.TABLES["match_keys"], keys)
    return changed


def survivors(
    candidates: list[Candidate],
) -> tuple[dict[str, Survivor], list[FieldConflict], dict[str, str | None]]:
    """Each field's surviving candidate, the conflicts, and the golden values."""
    chosen, conflicts = survive(candidates)
    values = {name: (chosen[name].value if name in chosen else None) for name in RECORD_FIELDS}
    return chosen, conflicts, values


def conflict_rows(
    customer_id: str, conflicts: Sequence[FieldConflict], detected_at: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": customer_id,
            "field": conflict.field,
            "chosen": conflict.chosen,
            "rule": conflict.rule,
            "candidates": [
                {
                    "value": c.value,
                    "system": c.system,
                    "ref": c.ref,
                    "verified": c.verified,
                    "observed_at": c.observed_at.isoformat(),
                }
                for c in conflict.candidates
            ],
            "detected_at": detected_at,
        }
        for conflict in conflicts
    ]


def key_rows(
    customer_id: str, model: MatchModel, record: Mapping[str, str | None]
) -> list[dict[str, str]]:
    """The stored blocking keys of a record (cut to the column's width)."""
    return [{"customer_id": customer_id, "key": key[:120]} for key in sorted(model.keys(record))]


def remember_conflicts(session: AsyncSession, customer_id: str, rows: list[dict[str, Any]]) -> None:
    """What :func:`announce` will say of a record's conflicts, written just now."""
    _known_conflicts(session)[customer_id] = rows


# ---- invoices ----------------------------------------------------------------------------


async def record_invoice(
    session: AsyncSession, customer: store.Customer, fact: InvoiceFact
) -> bool:
    """Keep the invoice and the discounts on its lines; a paid invoice makes a paying
    customer and counts once towards the lifetime value, however often it is reported."""
    invoice = await session.get(store.Invoice, fact.ref)
    newly_paid = fact.status == "paid" and (invoice is None or invoice.status != "paid")
    if invoice is None:
        invoice = store.Invoice(
            ref=fact.ref,
            customer_id=customer.id,
            status=fact.status,
            currency=fact.currency,
            total=fact.total,
            paid=fact.paid,
            issued_at=fact.issued_at,
            paid_at=fact.paid_at,
        )
        session.add(invoice)
    elif newly_paid:
        invoice.status, invoice.paid, invoice.paid_at = "paid", fact.paid, fact.paid_at
    for offer in fact.offers:
        offer_id = f"{fact.ref}/{offer.line_id or '-'}/{offer.discount or '-'}"[:300]
        if await session.get(store.Offer, offer_id) is None:
            session.add(
                store.Offer(
                    id=offer_id,
                    customer_id=invoice.customer_id,
                    invoice_ref=fact.ref,
                    line_id=offer.line_id,
                    discount=offer.discount,
                    coupon=offer.coupon,
                    description=offer.description,
                    amount=offer.amount,
                    currency=fact.currency,
                    percent_off=offer.percent_off,
                    given_at=fact.issued_at,
                )
            )
    if newly_paid:
        customer.status = "customer"
        customer.lifetime_value = (customer.lifetime_value or Decimal(0)) + fact.paid
        customer.sources = {**(customer.sources or {}), "status": fact.ref}
    await session.flush()
    return newly_paid


# ---- merges -----------------------------------------------------------------------------

_MOVABLE: tuple[tuple[str, Any, Any], ...] = (
    ("leads", store.CustomerLead, store.CustomerLead.lead_id),
    ("refs", store.SourceRecord, store.SourceRecord.ref),
    ("timeline", store.TimelineEntry, store.TimelineEntry.event_id),
    ("offers", store.Offer, store.Offer.id),
    ("invoices", store.Invoice, store.Invoice.ref),
    ("attributes", store.Attribute, store.Attribute.id),
)


async def merge(
    session: AsyncSession,
    survivor: store.Customer,
    absorbed: store.Customer,
    kind: str,
    score: float | None,
    now: datetime,
    model: MatchModel,
) -> store.Merge:
    """Move everything of ``absorbed`` to ``survivor``; the merge row remembers what moved
    so :func:`unmerge` can put it back."""
    for one in sorted((survivor, absorbed), key=lambda c: c.id):
        await store.lock(session, one)
    moved: dict[str, list[Any]] = {}
    for name, table, key in _MOVABLE:
        ids = list(
            (await session.execute(select(key).where(table.customer_id == absorbed.id))).scalars()
        )
        moved[name] = [str(i) for i in ids]
        if ids:
            await session.execute(update(table).where(key.in_(ids)).values(customer_id=survivor.id))
    moved["status"] = [absorbed.status]
    moved["survivor_status"] = [survivor.status]
    moved["lifetime_value"] = [str(absorbed.lifetime_value or 0)]
    for name in RECORD_FIELDS:
        setattr(absorbed, name, None)
    absorbed.sort_key = None
    absorbed.merged_into = survivor.id
    absorbed.updated_at = now
    await session.flush()
    await core_execute(session, store.DELETE_MATCH_KEYS, {"id": absorbed.id})
    await core_execute(session, store.DELETE_CONFLICTS, {"id": absorbed.id})
    _known_conflicts(session)[absorbed.id] = []
    if absorbed.status == "customer":
        survivor.status = "customer"
    survivor.lifetime_value = (survivor.lifetime_value or Decimal(0)) + (
        absorbed.lifetime_value or Decimal(0)
    )
    absorbed.status = "merged"
    row = store.Merge(
        id=str(uuid.uuid4()),
        survivor_id=survivor.id,
        absorbed_id=absorbed.id,
        kind=kind,
        score=score,
        moved=moved,
        merged_at=now,
    )
    session.add(row)
    await refresh(session, survivor, model)
    survivor.updated_at = now
    await session.flush()
    return row


async def unmerge(
    session: AsyncSession, row: store.Merge, now: datetime, model: MatchModel
) -> tuple[store.Customer, store.Customer]:
    """Undo a merge: what moved goes back, both golden records are recomputed."""
    survivor = await session.get(store.Customer, row.survivor_id)
    absorbed = await session.get(store.Customer, row.absorbed_id)
    assert survivor is not None and absorbed is not None
    for name, table, key in _MOVABLE:
        ids: list[Any] = list(row.moved.get(name, []))
        if name == "attributes":
            ids = [int(i) for i in ids]
        if ids:
            await session.execute(
                update(table)
                .where(key.in_(ids), table.customer_id == survivor.id)
                .values(customer_id=absorbed.id)
            )
    value = Decimal(row.moved.get("lifetime_value", ["0"])[0])
    survivor.lifetime_value = (survivor.lifetime_value or Decimal(0)) - value
    absorbed.lifetime_value = value
    absorbed.status = row.moved.get("status", ["lead"])[0]
    absorbed.merged_into = None
    paying = await session.execute(
        select(store.Invoice.ref).where(
            store.Invoice.customer_id == survivor.id, store.Invoice.status == "paid"
        )
    )
    before = row.moved.get("survivor_status", [survivor.status])[0]
    survivor.status = "customer" if paying.first() is not None else before
    row.undone_at = now
    await refresh(session, survivor, model)
    await session.flush()
    await refresh(session, absorbed, model)
    survivor.updated_at = absorbed.updated_at = now
    await session.flush()
    return survivor, absorbed


# ---- announcing ---------------------------------------------------------------------------


async def announce(
    uow: UnitOfWork,
    customer: store.Customer,
    contract_version: str | None,
    resolution: Resolution,
    now: datetime,
) -> None:
    """``customer.updated`` through the outbox, and one push per sync target, in the same
    transaction as the change."""
    known = _known_conflicts(uow.session).get(customer.id)
    if known is None:
        known = [
            {"field": c.field, "chosen": c.chosen, "rule": c.rule, "candidates": c.candidates}
            for c in await store.conflicts(uow.session, customer.id)
        ]
    fields = {
        **golden(customer),
        "status": customer.status,
        "lifetime_value": str(customer.lifetime_value or 0),
        "merged_into": customer.merged_into,
    }
    event = uow.emit(
        CustomerUpdated(
            customer_id=customer.id,
            fields=fields,
            sources=dict(customer.sources or {}),
            conflicts=[
                {
                    "field": c["field"],
                    "chosen": c["chosen"],
                    "rule": c["rule"],
                    "values": c["candidates"],
                }
                for c in known
            ],
        ),
        contract_version,
    )
    if resolution.sync_targets:
        await enqueue(uow.session, customer, fields, event.id, resolution.sync_targets, now)
