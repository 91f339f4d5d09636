"""Scoring's own tables: what it knows of each lead (features), its activities, and every
score it gave; and the queries on them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from leadpact.db import CoreConnection, UtcDateTime
from leadpact.messaging import rewrite_pending_events
from scoring.domain.erasure import erase_fields, redact_reasons
from scoring.domain.rules import Occurrence


class Base(DeclarativeBase):
    pass


class LeadFeatures(Base):
    """The attributes of a lead that scoring uses, as ``lead.created`` carried them."""

    __tablename__ = "scoring_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # Set when the person asked to be forgotten: ``fields`` then holds only what names no
    # one. A lead erased before its lead.created arrived keeps a row, so it is never stored.
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ActivityRow(Base):
    __tablename__ = "scoring_activities"
    # One event is one activity, even if two event ids carried it (natural key).
    __table_args__ = (UniqueConstraint("lead_id", "activity", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    activity: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ScoreRow(Base):
    """One score given to a lead; the latest is the current one."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    points: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float | None] = mapped_column(Float)
    tier: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_version: Mapped[str | None] = mapped_column(String(100))
    contract_version: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(32))
    announced: Mapped[bool] = mapped_column(default=False)
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime)


async def lead_features(session: AsyncSession, lead_id: str) -> LeadFeatures | None:
    # Locked (PostgreSQL): an erasure running meanwhile is waited for, never undone by a
    # score computed from the fields it blanked.
    return await session.get(LeadFeatures, lead_id, with_for_update=True)


async def record_activity(session: AsyncSession, row: ActivityRow) -> bool:
    """Store the activity once; False when this lead already had it at that instant."""
    existing = await session.scalar(
        select(ActivityRow.id).where(
            ActivityRow.lead_id == row.lead_id,
            ActivityRow.activity == row.activity,
            ActivityRow.occurred_at == row.occurred_at,
        )
    )
    if existing is not None:
        return False
    session.add(row)
    await session.flush()
    return True


async def activities_of(session: AsyncSession, lead_id: str) -> list[ActivityRow]:
    rows = await session.scalars(
        select(ActivityRow).where(ActivityRow.lead_id == lead_id).order_by(ActivityRow.occurred_at)
    )
    return list(rows)


async def latest_announced(session: AsyncSession, lead_id: str) -> ScoreRow | None:
    """The last score that went out as ``lead.scored``: re-scores are compared to it."""
    return await session.scalar(
        select(ScoreRow)
        .where(ScoreRow.lead_id == lead_id, ScoreRow.announced.is_(True))
        .order_by(ScoreRow.id.desc())
        .limit(1)
    )


# A consumer batch's statements (``scoring.handlers.on_leads_created``), built once and run
# on the unit of work's CoreConnection: Core skips the ORM's per-statement work, and a batch
# of leads costs one statement each instead of one per lead.
_leads = Base.metadata.tables["scoring_leads"]
_activities = Base.metadata.tables["scoring_activities"]
_ACTIVITIES_OF_LEADS = (
    select(_activities.c.lead_id, _activities.c.activity, _activities.c.occurred_at)
    .where(_activities.c.lead_id.in_(bindparam("lead_ids", expanding=True)))
    .order_by(_activities.c.lead_id, _activities.c.occurred_at, _activities.c.id)
)
_scores = Base.metadata.tables["scores"]


async def add_new_leads(connection: CoreConnection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Store the leads not stored yet (every column of :class:`LeadFeatures` given), in one
    statement; the ids of those it stored. A lead known already, or erased before it
    arrived, keeps its row."""
    added = await connection.insert_rows(
        _leads, rows, skip_conflicts_on=("lead_id",), returning=("lead_id",)
    )
    return {lead_id for (lead_id,) in added}


async def activities_of_leads(
    connection: CoreConnection, lead_ids: Sequence[str]
) -> dict[str, list[Occurrence]]:
    """Each lead's activities, oldest first (:func:`activities_of` for many leads)."""
    found: dict[str, list[Occurrence]] = defaultdict(list)
    result = await connection.execute(_ACTIVITIES_OF_LEADS, {"lead_ids": list(lead_ids)})
    for lead_id, activity, occurred_at in result:
        found[lead_id].append(Occurrence(activity, occurred_at))
    return found


async def add_scores(connection: CoreConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store scores (every column of :class:`ScoreRow` but ``id`` given) in one statement,
    in order: ids grow in the order given, and the latest score is the highest id."""
    await connection.insert_rows(_scores, rows)


async def history(session: AsyncSession, lead_id: str, limit: int) -> list[ScoreRow]:
    """The lead's scores, newest first."""
    rows = await session.scalars(
        select(ScoreRow)
        .where(ScoreRow.lead_id == lead_id)
        .order_by(ScoreRow.id.desc())
        .limit(limit)
    )
    return list(rows)


class LabelRow(Base):
    """What sales made of a lead: 1 (accepted as SQL, or a won deal) or 0 (rejected for a
    reason configured as negative). One label per lead; the latest fact decides."""

    __tablename__ = "labels"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    fact: Mapped[str] = mapped_column(String(64))
    labelled_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ModelRow(Base):
    """The model registry: every trained or uploaded model, its figures, and which one is
    the champion (exactly one at most)."""

    __tablename__ = "models"
    # At most one champion, even when two promotions race (partial unique index).
    __table_args__ = (
        Index(
            "ix_models_one_champion",
            "status",
            unique=True,
            sqlite_where=text("status = 'champion'"),
            postgresql_where=text("status = 'champion'"),
        ),
    )

    version: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # champion/challenger/retired
    origin: Mapped[str] = mapped_column(String(32))  # retrain or upload
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    promoted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    training_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    training_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    feature_schema: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    booster: Mapped[str] = mapped_column(Text)


async def set_label(
    session: AsyncSession, lead_id: str, label: int, fact: str, at: datetime
) -> None:
    row = await session.get(LabelRow, lead_id)
    if row is None:
        session.add(LabelRow(lead_id=lead_id, label=label, fact=fact, labelled_at=at))
    elif fact == "deal_won" or row.fact != "deal_won":
        # A won deal is the strongest fact; nothing later overrides it.
        row.label, row.fact, row.labelled_at = label, fact, at
    await session.flush()


async def labelled_leads(session: AsyncSession) -> list[tuple[LeadFeatures, LabelRow]]:
    """Leads with a label, oldest lead first (the order training needs)."""
    result = await session.execute(
        select(LeadFeatures, LabelRow)
        .join(LabelRow, LabelRow.lead_id == LeadFeatures.lead_id)
        .order_by(LeadFeatures.created_at, LeadFeatures.lead_id)
    )
    return [(lead, label) for lead, label in result.all()]


async def count_labels_since(session: AsyncSession, since: datetime | None) -> tuple[int, int]:
    """(all labels, labels newer than ``since``)."""
    total = await session.scalar(select(func.count()).select_from(LabelRow)) or 0
    if since is None:
        return total, total
    newer = (
        await session.scalar(
            select(func.count()).select_from(LabelRow).where(LabelRow.labelled_at > since)
        )
        or 0
    )
    return total, newer


async def models(session: AsyncSession) -> list[ModelRow]:
    return list(await session.scalars(select(ModelRow).order_by(ModelRow.created_at.desc())))


async def champion(session: AsyncSession) -> ModelRow | None:
    return await session.scalar(select(ModelRow).where(ModelRow.status == "champion"))


async def latest_trained(session: AsyncSession) -> ModelRow | None:
    return await session.scalar(
        select(ModelRow)
        .where(ModelRow.origin == "retrain")
        .order_by(ModelRow.created_at.desc())
        .limit(1)
    )


async def promote(session: AsyncSession, row: ModelRow, at: datetime) -> None:
    current = await champion(session)
    if current is not None and current.version != row.version:
        current.status = "retired"
        await session.flush()  # the old champion steps down before the new one steps up
    row.status, row.promoted_at = "champion", at
    await session.flush()


async def previous_champion(session: AsyncSession, current: ModelRow) -> ModelRow | None:
    """The model that was champion just before ``current``."""
    return await session.scalar(
        select(ModelRow)
        .where(
            ModelRow.promoted_at.is_not(None),
            ModelRow.version != current.version,
            ModelRow.promoted_at <= current.promoted_at,  # type: ignore[operator]
        )
        .order_by(ModelRow.promoted_at.desc())
        .limit(1)
    )


async def erase_leads(
    session: AsyncSession, lead_ids: Iterable[str], free_mail: Iterable[str], now: datetime
) -> int:
    """Keep of each lead only what names no one (``scoring.domain.erasure``), rid its
    scores' reasons of the values that did (points, probability and tier stay), and drop its
    unpublished events. Returns how many leads were known."""
    ids = sorted(set(lead_ids))
    if not ids:
        return 0
    free = list(free_mail)
    removed: dict[str, list[str]] = {}
    known = {
        row.lead_id: row
        for row in await session.scalars(
            select(LeadFeatures).where(LeadFeatures.lead_id.in_(ids)).with_for_update()
        )
    }
    for lead_id in ids:
        row = known.get(lead_id)
        if row is None:
            # Erased before we heard of it: a tombstone, so a late lead.created is ignored.
            session.add(LeadFeatures(lead_id=lead_id, fields={}, created_at=now, erased_at=now))
            continue
        erased = erase_fields(row.fields, free)
        row.fields, row.erased_at = erased.fields, row.erased_at or now
        removed[lead_id] = erased.removed
        for score in await session.scalars(select(ScoreRow).where(ScoreRow.lead_id == lead_id)):
            score.reasons = redact_reasons(score.reasons, erased.removed)

    # Scores not yet published still go out (sla-monitor needs the MQL), without the person.
    def redacted(topic: str, data: dict[str, Any]) -> dict[str, Any]:
        if topic != "lead.scored":
            return data
        gone = removed.get(data["lead_id"], [])
        return {**data, "reasons": redact_reasons(data.get("reasons") or [], gone)}

    await rewrite_pending_events(session, ids, redacted)
    await session.flush()
    return len(known)
