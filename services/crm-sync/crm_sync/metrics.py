"""crm-sync's own Prometheus series, registered in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class CrmMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhooks = Counter(
            "leadpact_crm_webhooks_total",
            "Webhook requests by provider and result (accepted, duplicate, ignored, rejected).",
            ["provider", "result"],
            registry=registry,
        )
        self.matches = Counter(
            "leadpact_crm_match_decisions_total",
            "Entity-resolution decisions: deterministic key, match, review or new record.",
            ["decision"],
            registry=registry,
        )
        self.merges = Counter(
            "leadpact_crm_merges_total",
            "Customer merges and un-merges, by kind (key, auto, review, undo).",
            ["kind"],
            registry=registry,
        )
        self.pushes = Counter(
            "leadpact_crm_sync_pushes_total",
            "Outbound pushes by target and result (sent, retry, failed).",
            ["target", "result"],
            registry=registry,
        )
        self.erasures = Counter(
            "leadpact_crm_erasures_total",
            "Subjects erased on request (DELETE /v1/subjects).",
            registry=registry,
        )
