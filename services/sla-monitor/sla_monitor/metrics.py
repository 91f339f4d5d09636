"""The sla-monitor's own Prometheus series, on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FIRST_RESPONSE_BUCKETS = (
    60.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    2 * 3600.0,
    4 * 3600.0,
    8 * 3600.0,
    86400.0,
    2 * 86400.0,
    7 * 86400.0,
)
"""From a minute to a week: first contacts take minutes when the SLA works, days when not."""

DETECTION_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""The target is p99 under a second; the top buckets show a watch that was down."""


class SlaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.first_response = Histogram(
            "leadpact_lead_first_response_seconds",
            "Time from becoming an MQL to the first contact by sales.",
            buckets=FIRST_RESPONSE_BUCKETS,
            registry=registry,
        )
        self.breaches = Counter(
            "leadpact_sla_breaches_total",
            "SLA deadlines that passed unmet, by clause, lead source and answerable team.",
            ["clause", "source", "team"],
            registry=registry,
        )
        self.armed = Counter(
            "leadpact_sla_deadlines_armed_total",
            "Deadlines armed for MQLs, by clause (the denominator of SLA compliance).",
            ["clause"],
            registry=registry,
        )
        self.at_risk = Counter(
            "leadpact_sla_at_risk_total",
            "At-risk warnings sent (a deadline reached its at_risk_at share), by clause.",
            ["clause"],
            registry=registry,
        )
        self.open_deadlines = Gauge(
            "leadpact_sla_open_deadlines",
            "Deadlines armed and not yet met or breached (as of the watch's last reload).",
            registry=registry,
        )
        self.deadline_partitions = Gauge(
            "leadpact_sla_deadline_partitions",
            "Partitions of lead.scored whose deadlines this instance watches (1 each): "
            "deadline ownership follows the consumer group's assignment.",
            ["partition"],
            registry=registry,
        )
        self.watch_cycles = Counter(
            "leadpact_sla_watch_cycles_total",
            "Times the deadline watch woke and scanned the store for due and at-risk "
            "deadlines (each a read and a transaction; it should follow the deadlines, "
            "not the rate of MQLs).",
            registry=registry,
        )
        self.detection_lag = Histogram(
            "leadpact_sla_detection_lag_seconds",
            "Time from a deadline falling due to its breach being emitted.",
            buckets=DETECTION_LAG_BUCKETS,
            registry=registry,
        )
