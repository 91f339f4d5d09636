"""What a breach says and how it is counted; shared by the watch (timed clauses) and the
rejection handler (the attempts clause)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadpact.events import SlaBreached
from sla_monitor import store
from sla_monitor.domain import TIMED_CLAUSES, late_seconds
from sla_monitor.metrics import SlaMetrics
from sla_monitor.routing.store import AssignmentRow


async def owning_teams(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, str]:
    """The team of each lead's current owner, where routing assigned one (read from
    routing's assignments: open deadlines always name the current owner, so its team is
    the team that missed them)."""
    wanted = sorted(set(lead_ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(AssignmentRow.lead_id, AssignmentRow.team).where(
            AssignmentRow.lead_id.in_(wanted), AssignmentRow.team.is_not(None)
        )
    )
    return {lead_id: team for lead_id, team in rows.all() if team is not None}


def breach_event(row: store.DeadlineRow, detected_at: datetime, team: str) -> SlaBreached:
    return SlaBreached(
        lead_id=row.lead_id,
        clause=row.clause,  # type: ignore[arg-type]
        owner=row.owner,
        source=row.source,
        deadline=row.due_at,
        late_seconds=late_seconds(row.due_at, detected_at),
        detected_at=detected_at,
        team=team,
    )


def count_breach(
    metrics: SlaMetrics,
    clause: str,
    source: str | None,
    team: str,
    due_at: datetime,
    detected_at: datetime,
) -> None:
    """Call once per breach, after its transaction committed."""
    metrics.breaches.labels(clause, source or "unknown", team).inc()
    if clause in TIMED_CLAUSES:  # an attempts breach is found at rejection, not by the clock
        metrics.detection_lag.observe(late_seconds(due_at, detected_at))
