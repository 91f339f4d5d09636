"""crm-sync's own tables: customers, the source records each customer is made of (leads,
billing and CRM records), per-field observations with their provenance, conflicts, merges and
reviews, invoices and the offers they carried, and the outbound sync log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    Row,
    Select,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from crm_sync.domain import RECORD_FIELDS

ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class Customer(Base):
    """The golden record: each column holds the value that survived its field's rule."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    legal_name: Mapped[str | None] = mapped_column(String(300))
    tax_id: Mapped[str | None] = mapped_column(String(64), index=True)
    billing_address: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="lead")
    lifetime_value: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    sources: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    sort_key: Mapped[str | None] = mapped_column(String(200))
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerLead(Base):
    __tablename__ = "customer_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)


class SourceRecord(Base):
    """A record of another system (``stripe:cus_1``, ``crm:42``) and the customer it is part of."""

    __tablename__ = "source_records"

    ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    system: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Attribute(Base):
    """One source's value of one field: the candidates survivorship chooses from."""

    __tablename__ = "customer_attributes"
    __table_args__ = (UniqueConstraint("customer_id", "field", "ref"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(500))
    system: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(200), index=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ix_customer_attributes_field_value", Attribute.field, Attribute.value)


class MatchKey(Base):
    """Blocking keys of a customer (phonetic name keys, company and postcode keys)."""

    __tablename__ = "match_keys"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)


# Candidates are read in a fixed order (a key's blocking partners by id, the sorted
# neighbourhood by sort key, then id): these indexes hand them over in that order, so a
# query stops after its limit instead of sorting a whole block.
Index("ix_match_keys_key_customer_id", MatchKey.key, MatchKey.customer_id)
Index("ix_customers_sort_key_id", Customer.sort_key, Customer.id)
# PostgreSQL's sorted neighbourhood of live customers. Without planner statistics (a young
# table: autovacuum analyses after a minute at the earliest) PostgreSQL took
# ix_customers_merged_into for ``merged_into IS NULL`` and sorted every live customer for
# each neighbourhood (1-2 ms each at 2,000 customers, growing with the table); this index
# serves the condition and the order at once. SQLite's test is unindexable (NOT_MERGED).
Index(
    "ix_customers_live_sort_key_id",
    Customer.sort_key,
    Customer.id,
    postgresql_where=Customer.merged_into.is_(None),
).ddl_if(dialect="postgresql")


class Conflict(Base):
    """A field whose sources disagree: every value is kept, one survives by its rule."""

    __tablename__ = "conflicts"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    field: Mapped[str] = mapped_column(String(32), primary_key=True)
    chosen: Mapped[str] = mapped_column(String(500))
    rule: Mapped[str] = mapped_column(String(64))
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Merge(Base):
    """One customer absorbed into another, with what moved, so it can be undone."""

    __tablename__ = "merges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    absorbed_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # auto | review
    score: Mapped[float | None] = mapped_column()
    moved: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Review(Base):
    """A pair the matcher was unsure about, waiting for a person's decision."""

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    score: Mapped[float] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    merge_id: Mapped[str | None] = mapped_column(String(36))


class Invoice(Base):
    __tablename__ = "invoices"

    ref: Mapped[str] = mapped_column(String(200), primary_key=True)  # stripe:in_1
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    paid: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Offer(Base):
    """A discount a customer was given on an invoice line (so it is not offered twice)."""

    __tablename__ = "offers"

    id: Mapped[str] = mapped_column(String(300), primary_key=True)  # invoice ref/line/discount
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    invoice_ref: Mapped[str] = mapped_column(String(200), index=True)
    line_id: Mapped[str | None] = mapped_column(String(200))
    discount: Mapped[str | None] = mapped_column(String(200))
    coupon: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    percent_off: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    given_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SyncEntry(Base):
    """One push of one customer's state to one outside system (the sync log)."""

    __tablename__ = "sync_log"
    __table_args__ = (UniqueConstraint("target", "idempotency_key"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_sync_log_status_next", SyncEntry.status, SyncEntry.next_attempt_at)


class TimelineEntry(Base):
    __tablename__ = "timeline"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# ---- queries -------------------------------------------------------------------------------
# The statements of the per-event path are built once, with bind parameters: building a
# SQLAlchemy expression (column comparisons, coercions) cost more CPU than running the query
# on SQLite (``python -m bench.entity_resolution.handler_cost``). A built statement also
# keeps its cache key, so SQLAlchemy finds its compiled form without recomputing it.


class _NotMerged(ColumnElement[bool]):
    """``customers.merged_into IS NULL``; on SQLite as an expression no index serves.

    Without planner statistics (a new or young file) SQLite takes ``ix_customers_merged_into``
    for ``merged_into IS NULL``, i.e. walks every live customer, instead of the index of the
    key it looks up (measured: 3 ms per candidate query at 600 customers, growing with the
    table); ``(merged_into || '') IS NULL`` means the same (``NULL || ''`` is NULL, a merged
    id never is). PostgreSQL keeps the plain test: it estimates the expression's selectivity
    badly and then chose a scan of every customer."""

    inherit_cache = True
    _traverse_internals = []  # noqa: RUF012 (no state: one cache key, statements cached)
    type = Boolean()


@compiles(_NotMerged)
def _not_merged(element: _NotMerged, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(Customer.__table__.c.merged_into.is_(None), **kw))


@compiles(_NotMerged, "sqlite")
def _not_merged_unindexed(element: _NotMerged, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(Customer.__table__.c.merged_into.concat("").is_(None), **kw))


NOT_MERGED = _NotMerged()


_LIVE = select(Customer).where(Customer.id == bindparam("id"))
# Lock and reload in one round trip (what ``session.refresh`` after the lock did in two).
_LOCK_ROW = (
    select(Customer)
    .where(Customer.id == bindparam("id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
# One round trip for all of a record's keys. The keys are sorted in a subquery that PostgreSQL
# cannot flatten (ORDER BY, set-returning function), so the locks are taken in that order:
# two writers sharing keys never wait on each other crosswise.
_LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))"
    " FROM (SELECT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS ordered"
)
_BY_LEAD = select(Customer).join(CustomerLead).where(CustomerLead.lead_id == bindparam("lead_id"))
_BY_REF = select(Customer).join(SourceRecord).where(SourceRecord.ref == bindparam("ref"))
_BY_EMAIL = select(Customer).where(Customer.email == bindparam("value"))
_BY_PHONE = (
    select(Customer)
    .where(Customer.phone == bindparam("value"), NOT_MERGED)
    .order_by(Customer.created_at)
    .limit(1)
)
_BY_TAX_ID = select(Customer).where(Customer.tax_id == bindparam("value"), NOT_MERGED).limit(1)
_BY_ATTRIBUTE = (
    select(Customer)
    .join(Attribute, Attribute.customer_id == Customer.id)
    .where(Attribute.field == bindparam("field"), Attribute.value == bindparam("value"))
    .order_by(Customer.created_at)
    .limit(1)
)


def _holding(rank: int, column: Any, name: str, *, live_only: bool) -> Select[str, datetime, int]:
    query = select(
        Customer.id, Customer.created_at, literal_column(str(rank), Integer).label("rank")
    )
    query = query.where(column == bindparam(name))
    return query.where(NOT_MERGED) if live_only else query


def _valued(rank: int, name: str) -> Select[str, datetime, int]:
    return (
        select(Customer.id, Customer.created_at, literal_column(str(rank), Integer).label("rank"))
        .join(Attribute, Attribute.customer_id == Customer.id)
        .where(Attribute.field == name, Attribute.value == bindparam(name))
    )


# by_email, else by_phone, else by_tax_id in one statement: the rank keeps that order (the
# golden column before any source's value, as each of them does), created_at the oldest.
_IDENTITY = union_all(
    _holding(0, Customer.email, "email", live_only=False),
    _valued(1, "email"),
    _holding(2, Customer.phone, "phone", live_only=True),
    _valued(3, "phone"),
    _holding(4, Customer.tax_id, "tax_id", live_only=True),
    _valued(5, "tax_id"),
).subquery("identity")
_BY_IDENTITY = (
    select(Customer)
    .join(_IDENTITY, _IDENTITY.c.id == Customer.id)
    .order_by(_IDENTITY.c.rank, _IDENTITY.c.created_at)
    .limit(1)
)


# Whether any of a batch's leads is linked already, or any of its identity keys is held by
# a record: :func:`by_lead` and :func:`by_identity` of each (which follow such a hit), asked
# at once. A hit sends its lead through the one-by-one path.
def _held(kind: str, column: Any, *where: Any) -> Any:
    return select(literal_column(f"'{kind}'").label("kind"), column.label("value")).where(
        column.in_(bindparam(kind, expanding=True)), *where
    )


def _valued_by(kind: str) -> Any:
    return _held(kind, Attribute.value, Attribute.field == kind)


_KNOWN = union_all(
    _held("lead", CustomerLead.lead_id),
    _held("email", Customer.email),
    _valued_by("email"),
    _held("phone", Customer.phone, NOT_MERGED),
    _valued_by("phone"),
    _held("tax_id", Customer.tax_id, NOT_MERGED),
    _valued_by("tax_id"),
)


# What the matcher reads of a candidate: plain rows, not ORM objects (loading ~50 customers
# into the identity map per lead was the largest single cost of a lead).
TABLES = Base.metadata.tables
_customers = TABLES["customers"]
_attributes = TABLES["customer_attributes"]
_source_records = TABLES["source_records"]
# ``beyond_leads``: the candidate holds a value or a record of another system than lead forms
# (it decides whether a best match may merge on its own; read for every candidate in the
# same round trip instead of one more query for the best).
MATCH_COLUMNS = (
    _customers.c.id,
    _customers.c.erased_at,
    *(_customers.c[name] for name in RECORD_FIELDS),
    _customers.c.sort_key,
    or_(
        exists().where(
            _attributes.c.customer_id == _customers.c.id, _attributes.c.system != "lead"
        ),
        exists().where(
            _source_records.c.customer_id == _customers.c.id, _source_records.c.system != "lead"
        ),
    ).label("beyond_leads"),
)
_match_keys = TABLES["match_keys"]
MATCH_FIELDS = tuple(column.name for column in MATCH_COLUMNS)


class CandidateRow(NamedTuple):
    """A candidate as the matcher reads it: the columns of :data:`MATCH_COLUMNS`, whether
    read from the table or made from a record created earlier in the same batch."""

    id: str
    erased_at: datetime | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    country: str | None
    legal_name: str | None
    tax_id: str | None
    billing_address: str | None
    sort_key: str | None
    beyond_leads: bool


assert CandidateRow._fields == MATCH_FIELDS, "CandidateRow must follow MATCH_COLUMNS"


def _blocking_partners(keys: Sequence[str]) -> Any:
    """(key, customer id) of each bound key in ``keys`` and its ``limit`` smallest holders
    (an index range scan of ``ix_match_keys_key_customer_id`` each): enough to take the
    ``limit`` smallest holders of any of them, as the callers do."""
    parts = [
        select(top.c.key, top.c.customer_id)
        for top in (
            select(_match_keys.c.key, _match_keys.c.customer_id)
            .where(_match_keys.c.key == bindparam(key))
            .order_by(_match_keys.c.customer_id)
            .limit(bindparam("limit", type_=Integer))
            .subquery()
            for key in keys
        )
    ]
    return parts[0] if len(parts) == 1 else union_all(*parts)


def _partners_first(ids: Any) -> Any:
    """The customers of the subquery ``ids`` (its ``customer_id``), looked up from it: a
    join, not ``id IN (…)``, which a planner without statistics may run once per customer
    (PostgreSQL did, a fresh table: 50 ms at 500 customers)."""
    return _customers.join(ids, _customers.c.id == ids.c.customer_id)


def _neighbours(sort_key: str, part: int, *extra: Any) -> Any:
    """The ``window`` live customers just below (part 1: ``sort_key`` and under, nearest
    first) or above (part 2) the bound ``sort_key``; ties on the sort key by id."""
    live = select(*MATCH_COLUMNS, literal_column(str(part)).label("part"), *extra).where(NOT_MERGED)
    near = _nearest_first(live, bindparam(sort_key), part)
    return select(near.limit(bindparam("window", type_=Integer)).subquery())


def _nearest_first(live: Select[Any], sort_key: Any, part: int) -> Select[Any]:
    """``live`` narrowed to the customers at or below ``sort_key`` (part 1), nearest first,
    or above it (part 2); ties on the sort key by id: every neighbourhood reads this way."""
    if part == 1:
        return live.where(_customers.c.sort_key <= sort_key).order_by(
            _customers.c.sort_key.desc(), _customers.c.id.desc()
        )
    return live.where(_customers.c.sort_key > sort_key).order_by(
        _customers.c.sort_key, _customers.c.id
    )


@lru_cache(maxsize=8)
def _candidates_of_one(keys: int) -> Any:
    """One record's candidates: the ``limit`` smallest ids sharing one of its ``keys``
    blocking keys, then its sorted neighbourhood (built once per number of keys)."""
    names = [f"key_{i}" for i in range(keys)]
    parts = []
    if names:
        partners = _blocking_partners(names).subquery("partners")
        smallest = (
            select(partners.c.customer_id)
            .distinct()
            .order_by(partners.c.customer_id)
            .limit(bindparam("limit", type_=Integer))
            .cte("smallest")
            # Computed once: a PostgreSQL table without statistics yet looks empty, and the
            # planner would rerun the partners' sorts once per customer (28 ms at 500).
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        parts.append(
            select(*MATCH_COLUMNS, literal_column("0").label("part"))
            .select_from(_partners_first(smallest))
            .where(NOT_MERGED)
        )
    parts += [_neighbours("sort_key", 1), _neighbours("sort_key", 2)]
    return union_all(*parts)


def _each_neighbourhood(part: int) -> Any:
    """Parts 1 and 2 of :data:`_CANDIDATES_OF_BATCH_ON_POSTGRESQL`: for each element of the
    bound array ``sort_keys`` (``slot``: its index from 0, as text), its ``window`` live
    customers below or above, as :func:`_neighbours` reads them for one sort key."""
    wanted = (
        func.unnest(bindparam("sort_keys", type_=ARRAY(String)))
        .table_valued("sort_key", with_ordinality="n")
        .render_derived(name=f"sort_keys_{part}")
    )
    live = select(*MATCH_COLUMNS, _customers.c.merged_into).where(NOT_MERGED)
    near = _nearest_first(live, wanted.c.sort_key, part)
    nearby = near.limit(bindparam("window", type_=Integer)).lateral(f"near_{part}")
    return select(
        *(nearby.c[name] for name in MATCH_FIELDS),
        literal_column(str(part)).label("part"),
        cast(wanted.c.n - 1, String).label("slot"),
        nearby.c.merged_into,
    ).select_from(wanted.join(nearby, true()))


def _candidates_of_batch_on_postgresql() -> Any:
    """The statement of :func:`batch_candidates` on PostgreSQL, in one shape for every
    batch: the keys and sort keys are two bound arrays, each element's holders and
    neighbours a ``LATERAL`` index scan. The earlier shapes (a ``UNION ALL`` part per key and
    two per sort key, up to several hundred) cost PostgreSQL 20-60 ms to plan, again on
    every execution (bench.e2e distributed at 300 leads/s: 2.5-3.5 ms of PostgreSQL CPU per
    lead, the largest share of the cluster's); this one is planned once per connection."""
    wanted = (
        func.unnest(bindparam("keys", type_=ARRAY(String)))
        .table_valued("key")
        .render_derived(name="wanted_keys")
    )
    smallest = (
        select(_match_keys.c.customer_id)
        .where(_match_keys.c.key == wanted.c.key)
        .order_by(_match_keys.c.customer_id)
        .limit(bindparam("limit", type_=Integer))
        .lateral("smallest")
    )
    tops = (
        select(wanted.c.key, smallest.c.customer_id)
        .select_from(wanted.join(smallest, true()))
        .cte("tops")
    )
    holders = (
        select(tops.c.customer_id)
        .distinct()
        .cte("holders")
        .prefix_with("MATERIALIZED", dialect="postgresql")  # see _candidates_of_one
    )
    # One primary-key lookup per holder: LIMIT keeps the planner from turning it into a hash
    # join over every customer, which it chose for a young table it thinks is tiny.
    holder = (
        select(*MATCH_COLUMNS, _customers.c.merged_into)
        .where(_customers.c.id == holders.c.customer_id)
        .limit(1)
        .lateral("holder")
    )
    return union_all(
        select(
            *(holder.c[name] for name in MATCH_FIELDS),
            literal_column("3").label("part"),
            cast(null(), String).label("slot"),
            holder.c.merged_into,
        ).select_from(holders.join(holder, true())),
        select(
            tops.c.customer_id,
            *(null() for _ in MATCH_COLUMNS[1:]),
            literal_column("0"),
            tops.c.key,
            null(),
        ),
        _each_neighbourhood(1),
        _each_neighbourhood(2),
    )


_CANDIDATES_OF_BATCH_ON_POSTGRESQL = _candidates_of_batch_on_postgresql()


def _each_neighbourhood_on_sqlite(part: int) -> Any:
    """Parts 1 and 2 of :data:`_CANDIDATES_OF_BATCH_ON_SQLITE`: for each element of the
    bound JSON array ``sort_keys`` (``slot``: its index from 0, as text), its ``window``
    live customers below or above. SQLite has no ``LATERAL``: each element's neighbours
    are a correlated ``IN`` subquery, which drives primary-key lookups of the customers."""
    wanted = (
        func.json_each(bindparam("sort_keys"))
        .table_valued("key", "value")
        .alias(f"sort_keys_{part}")
    )
    near = _nearest_first(select(_customers.c.id).where(NOT_MERGED), wanted.c.value, part)
    nearby = near.limit(bindparam("window", type_=Integer)).correlate(wanted)
    return select(
        *MATCH_COLUMNS,
        literal_column(str(part)).label("part"),
        cast(wanted.c.key, String).label("slot"),
        _customers.c.merged_into,
    ).select_from(wanted.join(_customers, _customers.c.id.in_(nearby)))


def _candidates_of_batch_on_sqlite() -> Any:
    """The statement of :func:`batch_candidates` on SQLite, in one shape for every batch
    (keys and sort keys as two bound JSON arrays, read with ``json_each``). The earlier
    shapes (a ``UNION ALL`` part per key and two per sort key, rounded up to powers of two)
    took SQLAlchemy 50-100 ms to compile, on the event loop, for each new shape: 8 % of the
    embedded mode's CPU in an 8-second run at 300 leads/s, and a pause of every service."""
    wanted = func.json_each(bindparam("keys")).table_valued("key", "value").alias("wanted_keys")
    smallest = (
        select(_match_keys.c.customer_id)
        .where(_match_keys.c.key == wanted.c.value)
        .order_by(_match_keys.c.customer_id)
        .limit(bindparam("limit", type_=Integer))
        .correlate(wanted)
    )
    tops = (
        select(wanted.c.value.label("key"), _match_keys.c.customer_id)
        .select_from(
            wanted.join(
                _match_keys,
                and_(
                    _match_keys.c.key == wanted.c.value,
                    _match_keys.c.customer_id.in_(smallest),
                ),
            )
        )
        .cte("tops")
    )
    holders = select(tops.c.customer_id).distinct().cte("holders")
    return union_all(
        select(
            *MATCH_COLUMNS,
            literal_column("3").label("part"),
            cast(null(), String).label("slot"),
            _customers.c.merged_into,
        ).select_from(_partners_first(holders)),
        select(
            tops.c.customer_id,
            *(null() for _ in MATCH_COLUMNS[1:]),
            literal_column("0"),
            tops.c.key,
            null(),
        ),
        _each_neighbourhood_on_sqlite(1),
        _each_neighbourhood_on_sqlite(2),
    )


_CANDIDATES_OF_BATCH_ON_SQLITE = _candidates_of_batch_on_sqlite()


_ATTRIBUTES = (
    select(Attribute).where(Attribute.customer_id == bindparam("id")).order_by(Attribute.id)
)
_OF_REF = select(Attribute).where(Attribute.ref == bindparam("ref"))
_EMAIL_HOLDER = select(Customer.id).where(
    Customer.email == bindparam("email"), Customer.id != bindparam("id")
)
_CONFLICTS = select(Conflict).where(Conflict.customer_id == bindparam("id"))
# Rows nothing reads back as objects in the same unit of work are written through Core: no
# identity map, no ORM bulk-statement bookkeeping; several rows of a table go through
# ``CoreConnection.insert_rows`` (one statement). Callers flush the customer row first.
DELETE_CONFLICTS = delete(TABLES["conflicts"]).where(
    TABLES["conflicts"].c.customer_id == bindparam("id")
)
DELETE_MATCH_KEYS = delete(TABLES["match_keys"]).where(
    TABLES["match_keys"].c.customer_id == bindparam("id")
)
CUSTOMER_COLUMNS = tuple(Customer.__mapper__.column_attrs)
INSERT_REVIEW = insert(TABLES["reviews"])
INSERT_TIMELINE = insert(TABLES["timeline"])


async def live(session: AsyncSession, customer: Customer | None) -> Customer | None:
    """Follow ``merged_into`` to the customer that absorbed this one."""
    seen: set[str] = set()
    while customer is not None and customer.merged_into and customer.id not in seen:
        seen.add(customer.id)
        customer = await session.get(Customer, customer.merged_into)
    return customer


def _is_postgresql(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def lock(session: AsyncSession, customer: Customer) -> None:
    """Serialise writers of one golden record (PostgreSQL row lock until commit): its
    candidates, keys and conflicts are rewritten as a whole. SQLite has one writer anyway."""
    if _is_postgresql(session):
        await session.execute(_LOCK_ROW, {"id": customer.id})


async def lock_keys(session: AsyncSession, keys: list[str]) -> None:
    """Serialise the resolution of records sharing an identity key (email, phone, tax id)
    with transaction-scoped advisory locks on PostgreSQL, taken in a fixed order: the
    second of two concurrent writers of one person waits, then finds the first's record
    instead of failing on the unique email and being retried."""
    if keys and _is_postgresql(session):
        await session.execute(_LOCK_KEYS, {"keys": sorted(set(keys))})


async def by_lead(session: AsyncSession, lead_id: str) -> Customer | None:
    found = (await session.execute(_BY_LEAD, {"lead_id": lead_id})).scalar_one_or_none()
    return await live(session, found)


async def by_ref(session: AsyncSession, ref: str) -> Customer | None:
    found = (await session.execute(_BY_REF, {"ref": ref})).scalar_one_or_none()
    return await live(session, found)


async def by_email(session: AsyncSession, email: str) -> Customer | None:
    found = (await session.execute(_BY_EMAIL, {"value": email})).scalar_one_or_none()
    if found is None:
        found = await by_attribute(session, "email", email)
    return await live(session, found)


async def by_phone(session: AsyncSession, phone: str) -> Customer | None:
    found = (await session.execute(_BY_PHONE, {"value": phone})).scalars().first()
    if found is None:
        found = await by_attribute(session, "phone", phone)
    return await live(session, found)


async def by_tax_id(session: AsyncSession, tax_id: str) -> Customer | None:
    found = (await session.execute(_BY_TAX_ID, {"value": tax_id})).scalars().first()
    if found is None:
        found = await by_attribute(session, "tax_id", tax_id)
    return await live(session, found)


async def by_attribute(session: AsyncSession, field: str, value: str) -> Customer | None:
    params = {"field": field, "value": value}
    return await live(session, (await session.execute(_BY_ATTRIBUTE, params)).scalars().first())


async def by_identity(
    session: AsyncSession, email: str | None, phone: str | None, tax_id: str | None
) -> Customer | None:
    """The same as :func:`by_email`, else :func:`by_phone`, else :func:`by_tax_id`, in one
    round trip (a missing key matches nothing)."""
    if not (email or phone or tax_id):
        return None
    params = {"email": email or None, "phone": phone or None, "tax_id": tax_id or None}
    return await live(session, (await session.execute(_BY_IDENTITY, params)).scalars().first())


async def known(session: AsyncSession, wanted: Mapping[str, Sequence[str]]) -> set[tuple[str, str]]:
    """Which of ``wanted`` (lead ids under ``lead``, identity keys under ``email``,
    ``phone``, ``tax_id``) crm-sync knows: the (kind, value) pairs :func:`by_lead` or
    :func:`by_identity` would find a record for; one round trip."""
    params = {kind: list(wanted.get(kind, ())) for kind in ("lead", "email", "phone", "tax_id")}
    return {(row.kind, row.value) for row in await session.execute(_KNOWN, params)}


async def attributes(session: AsyncSession, customer_id: str) -> list[Attribute]:
    return list((await session.execute(_ATTRIBUTES, {"id": customer_id})).scalars())


async def attributes_of(session: AsyncSession, ref: str) -> list[Attribute]:
    """What one source record said (every field), to update in place."""
    return list((await session.execute(_OF_REF, {"ref": ref})).scalars())


async def email_holder(session: AsyncSession, email: str, other_than: str) -> str | None:
    params = {"email": email, "id": other_than}
    return (await session.execute(_EMAIL_HOLDER, params)).scalar()


async def conflicts(session: AsyncSession, customer_id: str) -> list[Conflict]:
    return list((await session.execute(_CONFLICTS, {"id": customer_id})).scalars())


# ---- lookups of many people at once (the batch lookup route) ------------------------------
# :func:`by_email` and :func:`by_phone` of a whole batch, one statement each: the golden
# column (rank 0) before a source's value (rank 1), then the oldest, as each of them does.
def _holders_of(kind: str, column: Any, *where: Any) -> Any:
    rank = literal_column("0", Integer).label("rank")
    golden = select(Customer.id, column.label("value"), rank, Customer.created_at).where(
        column.in_(bindparam("golden", expanding=True)), *where
    )
    valued = (
        select(Customer.id, Attribute.value, literal_column("1", Integer), Customer.created_at)
        .join(Attribute, Attribute.customer_id == Customer.id)
        .where(Attribute.field == kind, Attribute.value.in_(bindparam("valued", expanding=True)))
    )
    held = union_all(golden, valued).subquery(f"{kind}_holders")
    return (
        select(Customer, held.c.value)
        .join(held, held.c.id == Customer.id)
        .order_by(held.c.value, held.c.rank, held.c.created_at, held.c.id)
    )


_EMAIL_HOLDERS = _holders_of("email", Customer.email)
_PHONE_HOLDERS = _holders_of("phone", Customer.phone, NOT_MERGED)
_CUSTOMERS = select(Customer).where(Customer.id.in_(bindparam("ids", expanding=True)))
_ATTRIBUTES_OF_MANY = (
    select(Attribute)
    .where(Attribute.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(Attribute.id)
)
# A customer's leads and source records, both in one round trip.
_LINKS_OF_MANY: Any = union_all(
    select(
        CustomerLead.customer_id,
        literal_column("'lead'").label("kind"),
        CustomerLead.lead_id.label("value"),
    ).where(CustomerLead.customer_id.in_(bindparam("leads", expanding=True))),
    select(SourceRecord.customer_id, literal_column("'ref'"), SourceRecord.ref).where(
        SourceRecord.customer_id.in_(bindparam("refs", expanding=True))
    ),
)


async def _holders(session: AsyncSession, query: Any, values: set[str]) -> dict[str, Customer]:
    if not values:
        return {}
    found: dict[str, Customer] = {}
    params = {"golden": sorted(values), "valued": sorted(values)}
    for customer, value in await session.execute(query, params):
        found.setdefault(value, customer)  # the first of each value is the one to take
    return found


async def live_many(session: AsyncSession, found: Mapping[str, Customer]) -> dict[str, Customer]:
    """:func:`live` of many customers at once: one round trip per step along merge chains
    (none at all when no customer found was merged), a broken chain drops its key."""
    current: dict[str, Customer] = dict(found)
    seen: dict[str, set[str]] = {key: set() for key in found}
    loaded = {c.id: c for c in found.values()}
    while True:
        moving = {
            key: c.merged_into
            for key, c in current.items()
            if c.merged_into and c.id not in seen[key]
        }
        if not moving:
            return current
        missing = set(moving.values()) - loaded.keys()
        if missing:
            rows = await session.execute(_CUSTOMERS, {"ids": sorted(missing)})
            loaded.update((c.id, c) for c in rows.scalars())
        for key, survivor_id in moving.items():
            seen[key].add(current[key].id)
            if survivor_id in loaded:
                current[key] = loaded[survivor_id]
            else:
                del current[key]


async def by_people(
    session: AsyncSession, people: Sequence[tuple[str | None, str | None]]
) -> list[Customer | None]:
    """For each (email key, phone key): :func:`by_email`, else :func:`by_phone` — in two
    round trips for the whole batch (the emails, then the phones of those no email found),
    plus one per merge step when a hit was merged."""
    emails = await _holders(session, _EMAIL_HOLDERS, {e for e, _ in people if e})
    found = await live_many(session, emails)
    rest = {p for e, p in people if p and (not e or e not in found)}
    phones = await live_many(session, await _holders(session, _PHONE_HOLDERS, rest))
    return [
        (found.get(email) if email else None) or (phones.get(phone) if phone else None)
        for email, phone in people
    ]


@dataclass
class GoldenParts:
    """What a golden record is shown with: every source's values (to tell provenance and
    conflicts), its leads and its source records."""

    attributes: list[Attribute]
    lead_ids: list[str]
    refs: list[str]


async def golden_parts(session: AsyncSession, ids: Sequence[str]) -> dict[str, GoldenParts]:
    """:func:`attributes`, :func:`lead_ids` and :func:`refs` of many customers in two
    round trips."""
    if not ids:
        return {}
    wanted = sorted(set(ids))
    parts = {i: GoldenParts([], [], []) for i in wanted}
    for a in (await session.execute(_ATTRIBUTES_OF_MANY, {"ids": wanted})).scalars():
        parts[a.customer_id].attributes.append(a)
    links = await session.execute(_LINKS_OF_MANY, {"leads": wanted, "refs": wanted})
    for customer_id, kind, value in links:
        (parts[customer_id].lead_ids if kind == "lead" else parts[customer_id].refs).append(value)
    for part in parts.values():
        part.lead_ids.sort()
        part.refs.sort()
    return parts


@dataclass(frozen=True)
class Nearby:
    """What the candidate query read for one record, each part in its fixed order:
    blocking partners by id, neighbours below (nearest first) and above."""

    keyed: list[CandidateRow]
    below: list[CandidateRow]
    above: list[CandidateRow]


def _candidate(row: Row[Any]) -> CandidateRow:
    return CandidateRow(*row[: len(MATCH_FIELDS)])


def nearest(rows: list[CandidateRow], part: int) -> list[CandidateRow]:
    """A window's rows nearest first (what its ORDER BY gave: the order a UNION keeps is
    not promised). Python compares the folded sort keys and ids as the database's C
    collation (and SQLite's binary one) does."""
    return sorted(rows, key=lambda r: (r.sort_key, r.id), reverse=part == 1)


async def candidates(
    session: AsyncSession,
    keys: list[str],
    sort_key: str | None,
    limit: int,
    window: int,
) -> Nearby:
    """Candidates sharing a blocking key (the ``limit`` smallest ids), then the ``window``
    customers on each side of ``sort_key`` (sorted neighbourhood); one round trip."""
    if not keys and (not sort_key or window <= 0):
        return Nearby([], [], [])
    params: dict[str, Any] = {f"key_{i}": key for i, key in enumerate(keys)}
    params |= {"limit": limit, "sort_key": sort_key or None, "window": max(window, 0)}
    found: dict[int, list[CandidateRow]] = {0: [], 1: [], 2: []}
    for row in await session.execute(_candidates_of_one(len(keys)), params):
        found[int(row.part)].append(_candidate(row))
    return Nearby(
        sorted(found[0], key=lambda r: r.id),
        nearest(found[1], 1),
        nearest(found[2], 2),
    )


@dataclass
class BatchCandidates:
    """What one query read for a batch of records: each blocking key's smallest holders
    (merged ones included, by id) and each sort key's neighbourhood."""

    holders: dict[str, list[tuple[CandidateRow, bool]]]  # key → (row, merged), by id
    below: dict[int, list[CandidateRow]]
    above: dict[int, list[CandidateRow]]


def _batch_statement(
    session: AsyncSession, keys: Sequence[str], sort_keys: Sequence[str | None]
) -> tuple[Any, dict[str, Any]]:
    """The statement of :func:`batch_candidates` and its keys' and sort keys' parameters."""
    if _is_postgresql(session):
        return _CANDIDATES_OF_BATCH_ON_POSTGRESQL, {"keys": list(keys), "sort_keys": sort_keys}
    arrays = {"keys": json.dumps(list(keys)), "sort_keys": json.dumps(list(sort_keys))}
    return _CANDIDATES_OF_BATCH_ON_SQLITE, arrays


async def batch_candidates(
    session: AsyncSession,
    keys: Sequence[str],
    sort_keys: Sequence[str | None],
    limit: int,
    window: int,
) -> BatchCandidates:
    """The candidates of many records in one round trip: what :func:`candidates` reads for
    each record can be assembled from it (:func:`crm_sync.lead_batches.candidates_of_lead`).

    One statement of one shape per dialect, whatever the batch, in four parts:

    - part 3: the customers among each of the ``keys`` blocking keys' ``limit`` smallest
      holders (merged ones included: the one-record query counts them towards its limit);
    - part 0: which key they hold (``slot``: the key, ``id``: the holder; nothing else);
    - parts 1 and 2: the sorted neighbourhood of each record with a sort key (``slot``:
      its index among them).

    A holder's row comes once however many keys it holds, and first: the result's column
    types are the first part's."""
    found = BatchCandidates({key: [] for key in keys}, {}, {})
    sorted_at = [n for n, key in enumerate(sort_keys) if key] if window > 0 else []
    if not keys and not sorted_at:
        return found
    statement, params = _batch_statement(session, keys, [sort_keys[n] for n in sorted_at])
    params |= {"limit": limit, "window": max(window, 0)}
    holders: dict[str, tuple[CandidateRow, bool]] = {}
    holding: list[tuple[str, str]] = []
    for row in await session.execute(statement, params):
        part = int(row.part)
        if part == 3:
            holders[row.id] = (_candidate(row), row.merged_into is not None)
        elif part == 0:
            holding.append((row.slot, row.id))
        else:
            at = sorted_at[int(row.slot)]
            (found.below if part == 1 else found.above).setdefault(at, []).append(_candidate(row))
    for key, customer_id in holding:
        found.holders[key].append(holders[customer_id])  # (a foreign key: it is there)
    for held in found.holders.values():
        held.sort(key=lambda pair: pair[0].id)
    for n, rows in found.below.items():
        found.below[n] = nearest(rows, 1)
    for n, rows in found.above.items():
        found.above[n] = nearest(rows, 2)
    return found


async def lead_ids(session: AsyncSession, customer_id: str) -> list[str]:
    query = select(CustomerLead.lead_id).where(CustomerLead.customer_id == customer_id)
    return sorted((await session.execute(query)).scalars())


async def refs(session: AsyncSession, customer_id: str) -> list[str]:
    query = select(SourceRecord.ref).where(SourceRecord.customer_id == customer_id)
    return sorted((await session.execute(query)).scalars())


async def timeline(session: AsyncSession, customer_id: str) -> list[TimelineEntry]:
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.customer_id == customer_id)
        .order_by(TimelineEntry.occurred_at, TimelineEntry.event_id)
    )
    return list((await session.execute(query)).scalars())


async def offers(session: AsyncSession, customer_id: str) -> list[Offer]:
    query = select(Offer).where(Offer.customer_id == customer_id).order_by(Offer.given_at, Offer.id)
    return list((await session.execute(query)).scalars())
