"""A consumer batch of ``lead.created`` ingested together: the same rows, events and
metrics as :func:`crm_sync.handlers.on_lead_created` on each lead in order, with one read
of links and identity keys, one candidate query and one multi-row insert per table for the
batch instead of ~10 statements per lead.

Only the common lead goes this way: new to crm-sync (no link, no record holding its email,
phone or tax id) and not merged on its own (a new record, with a review when unsure). The
first other lead (the same lead twice, a returning person, an erased one, an automatic
merge) goes through the one-by-one handler, after the leads before it are written; the
leads after it start a new round. A lead matches the records made earlier in its batch as
it would have matched them in the table: they join its candidates where the query would
have put them (see :func:`candidates_of_lead`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_sync import store
from crm_sync.domain import Observation, observation
from crm_sync.matching import Prepared
from crm_sync.records import (
    Resolution,
    announce,
    attribute_row,
    candidates_of,
    choose,
    conflict_rows,
    key_rows,
    match_record,
    new_customer,
    pool,
    remember_conflicts,
    review_row,
    survivors,
    timeline_row,
)
from leadpact.clock import Clock
from leadpact.db import core_connection
from leadpact.events import CloudEvent, LeadCreated
from leadpact.messaging import UnitOfWork

IDENTITY_KEYS = ("email", "phone", "tax_id")
# A round's leads at most, and its distinct blocking keys at most: what one candidate
# statement (crm_sync.store.batch_candidates) looks up and returns, and one resolution holds
# in memory.
ROUND = 64
ROUND_KEYS = 256

OneByOne = Callable[[CloudEvent[LeadCreated]], Awaitable[None]]


@dataclass(frozen=True)
class Arrival:
    """One lead of the batch as the matcher sees it."""

    event: CloudEvent[LeadCreated]
    obs: Observation
    record: dict[str, str | None]
    keys: list[str]  # blocking keys, sorted (what the one-lead query binds)
    sort_key: str | None

    @property
    def lead_id(self) -> str:
        return self.event.data.lead_id


@dataclass(frozen=True)
class Made:
    """A record made earlier in the batch, as the candidate query would read it."""

    row: store.CandidateRow
    keys: frozenset[str]  # as stored (cut to the column's width)


@dataclass
class Writes:
    """The rows of a round's new records, one multi-row insert per table."""

    customers: list[dict[str, Any]]
    links: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    keys: list[dict[str, Any]]
    attributes: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    timeline: list[dict[str, Any]]


def arrival(event: CloudEvent[LeadCreated], resolution: Resolution) -> Arrival:
    lead = event.data
    obs = observation("lead", f"lead:{lead.lead_id}", lead.created_at, lead.model_dump())
    record = match_record(obs.fields)
    model = resolution.model
    return Arrival(event, obs, record, sorted(model.keys(record)), model.sort_key(record) or None)


async def ingest_leads(
    uow: UnitOfWork,
    events: Sequence[CloudEvent[LeadCreated]],
    clock: Clock,
    resolution: Resolution,
    one_by_one: OneByOne,
) -> None:
    """Every lead of ``events`` in order: rounds of common leads together, each other lead
    through ``one_by_one`` (the event handler) as the consumer would call it."""
    pending = [arrival(event, resolution) for event in events]
    size = max(1, min(ROUND, ROUND_KEYS // max(1, len(resolution.model.blocking))))
    while pending:
        now_round, later = pending[:size], pending[size:]
        done = await _round(uow, now_round, clock, resolution)
        if done < len(now_round):
            await _alone(uow, now_round[done].event, one_by_one)
            done += 1
        pending = now_round[done:] + later


async def _alone(uow: UnitOfWork, event: CloudEvent[LeadCreated], one_by_one: OneByOne) -> None:
    """One lead as in a session of its own (what the consumer does between events): no ORM
    object or session note left from before, none left behind."""
    await _fresh_session(uow)
    await one_by_one(event)
    await _fresh_session(uow)


async def _fresh_session(uow: UnitOfWork) -> None:
    await uow.session.flush()
    uow.session.expunge_all()
    uow.session.info.clear()


async def _round(
    uow: UnitOfWork, arrivals: Sequence[Arrival], clock: Clock, resolution: Resolution
) -> int:
    """Ingest the longest prefix of common leads of ``arrivals``; returns its length."""
    session = uow.session
    await store.lock_keys(
        session,
        [f"{k}:{a.obs.fields[k]}" for a in arrivals for k in IDENTITY_KEYS if k in a.obs.fields],
    )
    known = await store.known(
        session,
        {
            "lead": [a.lead_id for a in arrivals],
            **{k: [a.obs.fields[k] for a in arrivals if k in a.obs.fields] for k in IDENTITY_KEYS},
        },
    )
    found = await store.batch_candidates(
        session,
        sorted({key for a in arrivals for key in a.keys}),
        [a.sort_key for a in arrivals],
        resolution.candidates,
        resolution.window,
    )
    writes = Writes([], [], [], [], [], [], [])
    made: list[Made] = []
    prepared: dict[str, Prepared] = {}  # candidates as compared, by id: shared by the leads
    announced: list[tuple[store.Customer, Arrival, datetime, list[dict[str, Any]]]] = []
    for n, a in enumerate(arrivals):
        if _known(a, known):
            return await _finish(uow, n, writes, announced, resolution)
        nearby = candidates_of_lead(a, n, found, made, resolution)
        candidate, score = choose(a.record, a.obs.system, pool(nearby), resolution, prepared)
        if score is not None and score.decision == "match":
            return await _finish(uow, n, writes, announced, resolution)  # a merge
        now = clock.now()
        customer, conflicts, keys = _new_record(a, now, resolution, writes)
        if candidate is not None and score is not None:
            resolution.count(uow, "review")
            writes.reviews.append(review_row(customer.id, candidate, score, now))
        else:
            resolution.count(uow, "new")
        made.append(Made(_candidate_row(customer), keys))
        announced.append((customer, a, now, conflicts))
        _remember(known, a)
    return await _finish(uow, len(arrivals), writes, announced, resolution)


async def _finish(
    uow: UnitOfWork,
    done: int,
    writes: Writes,
    announced: Sequence[tuple[store.Customer, Arrival, datetime, list[dict[str, Any]]]],
    resolution: Resolution,
) -> int:
    """Write a round's new records and announce each, in order; ``done`` back."""
    await _write(uow.session, writes)
    for customer, a, now, conflicts in announced:
        remember_conflicts(uow.session, customer.id, conflicts)
        await announce(uow, customer, a.event.contractversion, resolution, now)
    return done


def _known(a: Arrival, known: set[tuple[str, str]]) -> bool:
    """Linked already, or an identity key of it held by a record (in the table or made
    earlier in the batch)."""
    if ("lead", a.lead_id) in known:
        return True
    return any((k, a.obs.fields[k]) in known for k in IDENTITY_KEYS if k in a.obs.fields)


def _remember(known: set[tuple[str, str]], a: Arrival) -> None:
    """A new record holds its lead and, as values of its own, its identity keys."""
    known.add(("lead", a.lead_id))
    known.update((k, a.obs.fields[k]) for k in IDENTITY_KEYS if k in a.obs.fields)


def candidates_of_lead(
    a: Arrival,
    n: int,
    found: store.BatchCandidates,
    made: Sequence[Made],
    resolution: Resolution,
) -> store.Nearby:
    """What :func:`crm_sync.store.candidates` would read for lead ``n`` once the records
    ``made`` before it were in the table: its keys' ``limit`` smallest holders among
    those read and those made (merged ones count towards the limit, as in the query),
    and the ``window`` nearest sort keys on each side among both."""
    holders: dict[str, tuple[store.CandidateRow, bool]] = {}
    for key in a.keys:
        for row, merged in found.holders.get(key, ()):
            holders[row.id] = (row, merged)
        for m in made:
            if key in m.keys:
                holders[m.row.id] = (m.row, False)
    smallest = sorted(holders)[: resolution.candidates]
    keyed = [holders[i][0] for i in smallest if not holders[i][1]]
    below: list[store.CandidateRow] = []
    above: list[store.CandidateRow] = []
    window = max(resolution.window, 0)
    if a.sort_key and window:
        s = a.sort_key
        made_rows = [m.row for m in made if m.row.sort_key is not None]
        lower = [r for r in made_rows if (r.sort_key or "") <= s]
        higher = [r for r in made_rows if (r.sort_key or "") > s]
        below = store.nearest(found.below.get(n, []) + lower, 1)[:window]
        above = store.nearest(found.above.get(n, []) + higher, 2)[:window]
    return store.Nearby(keyed, below, above)


def _new_record(
    a: Arrival, now: datetime, resolution: Resolution, writes: Writes
) -> tuple[store.Customer, list[dict[str, Any]], frozenset[str]]:
    """The rows :func:`crm_sync.records.ingest` writes for a new record of one lead (its
    golden values from this observation alone), added to ``writes``. Returns the record
    (not in the session: for :func:`announce`), its conflicts and its stored keys."""
    customer = new_customer(now)
    observed = candidates_of(a.obs)
    chosen, conflicts, values = survivors(observed)
    for name, value in values.items():
        setattr(customer, name, value)
    customer.sources = {name: s.ref for name, s in chosen.items()}
    record = match_record(values)
    customer.sort_key = resolution.model.sort_key(record)[:200] or None
    detected_at = max((c.observed_at for c in observed), default=customer.updated_at)
    writes.customers.append(_customer_row(customer))
    writes.links.append({"lead_id": a.lead_id, "customer_id": customer.id})
    conflicts_of = conflict_rows(customer.id, conflicts, detected_at)
    writes.conflicts += conflicts_of
    keys = key_rows(customer.id, resolution.model, record)
    writes.keys += keys
    writes.attributes += [attribute_row(customer.id, a.obs, name) for name in a.obs.fields]
    lead = a.event.data
    detail = {"source": lead.source.platform}
    writes.timeline.append(timeline_row(a.event, customer.id, lead.created_at, detail))
    return customer, conflicts_of, frozenset(k["key"] for k in keys)


def _customer_row(customer: store.Customer) -> dict[str, Any]:
    return {column.key: getattr(customer, column.key) for column in store.CUSTOMER_COLUMNS}


def _candidate_row(customer: store.Customer) -> store.CandidateRow:
    """A record made from a lead: only lead values and a lead link (``beyond_leads`` no)."""
    values = [getattr(customer, name) for name in store.MATCH_FIELDS[:-1]]
    return store.CandidateRow._make([*values, False])


async def _write(session: Any, writes: Writes) -> None:
    """One insert per table (customers first: the others point at them)."""
    connection = await core_connection(session)
    for table, rows in (
        ("customers", writes.customers),
        ("customer_leads", writes.links),
        ("conflicts", writes.conflicts),
        ("match_keys", writes.keys),
        ("customer_attributes", writes.attributes),
        ("reviews", writes.reviews),
        ("timeline", writes.timeline),
    ):
        await connection.insert_rows(store.TABLES[table], rows)
