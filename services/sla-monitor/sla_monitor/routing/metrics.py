"""Routing series: fairness (assignments per member) and load (open leads per owner)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RoutingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.assigned = Counter(
            "leadpact_leads_assigned_total",
            "MQLs given an owner (by routing, the CRM, a person or an escalation), by team "
            "and member.",
            ["team", "member"],
            registry=registry,
        )
        self.open_leads = Gauge(
            "leadpact_owner_open_leads",
            "Leads an owner holds open (assigned, not yet accepted or rejected), as last "
            "written by this instance.",
            ["member"],
            registry=registry,
        )
