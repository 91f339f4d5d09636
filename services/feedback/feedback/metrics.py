"""feedback's own Prometheus series, on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FeedbackMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.activities = Counter(
            "leadpact_sales_activities_total",
            "Sales activities accepted and turned into events, by type and entry point.",
            ["type", "via"],
            registry=registry,
        )
        self.rejections = Counter(
            "leadpact_rejections_total",
            "Leads rejected by sales, by the contract's reason code.",
            ["reason"],
            registry=registry,
        )
        self.refused = Counter(
            "leadpact_activities_refused_total",
            "Sales activities refused, by the field at fault and the HTTP status.",
            ["field", "status"],
            registry=registry,
        )
        self.recycled = Counter(
            "leadpact_leads_recycled_total",
            "Rejected leads sent back to marketing nurture, by rejection reason.",
            ["reason"],
            registry=registry,
        )
        self.pending_recycles = Gauge(
            "leadpact_recycles_pending",
            "Rejected leads waiting for their recycle delay (as of the worker's last pass).",
            registry=registry,
        )
        self.webhooks = Counter(
            "leadpact_crm_webhooks_total",
            "CRM webhook requests, by CRM and result (accepted, bad_signature, stale, ...).",
            ["crm", "result"],
            registry=registry,
        )
