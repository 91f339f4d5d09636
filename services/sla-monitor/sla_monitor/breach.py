"""What a breach says and how it is counted; shared by the watch (timed clauses) and the
rejection handler (the attempts clause)."""

from __future__ import annotations

from datetime import datetime

from leadpact.events import SlaBreached
from sla_monitor import store
from sla_monitor.domain import CLAUSE_TEAM, TIMED_CLAUSES, late_seconds
from sla_monitor.metrics import SlaMetrics


def breach_event(row: store.DeadlineRow, detected_at: datetime) -> SlaBreached:
    return SlaBreached(
        lead_id=row.lead_id,
        clause=row.clause,  # type: ignore[arg-type]
        owner=row.owner,
        source=row.source,
        deadline=row.due_at,
        late_seconds=late_seconds(row.due_at, detected_at),
        detected_at=detected_at,
    )


def count_breach(
    metrics: SlaMetrics, clause: str, source: str | None, due_at: datetime, detected_at: datetime
) -> None:
    """Call once per breach, after its transaction committed."""
    metrics.breaches.labels(clause, source or "unknown", CLAUSE_TEAM.get(clause, "sales")).inc()
    if clause in TIMED_CLAUSES:  # an attempts breach is found at rejection, not by the clock
        metrics.detection_lag.observe(late_seconds(due_at, detected_at))
