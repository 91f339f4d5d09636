"""Prometheus metrics. Each service has its own registry so that, in the embedded mode where
five services share one process, each ``/metrics`` shows only its own series."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


LagSource = Callable[[], dict[tuple[str, int], int]]


class ConsumerLag(Collector):
    """``leadpact_consumer_lag`` read from the bus at scrape time, so it is never stale."""

    def __init__(self) -> None:
        self.source: LagSource | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "leadpact_consumer_lag",
            "Messages on an owned partition not yet handled by this service's consumer.",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted((self.source or dict)().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


class ServiceMetrics:
    """Request and event metrics every service exposes; services add their own series to
    ``registry``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "leadpact_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "leadpact_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_consumed = Counter(
            "leadpact_events_consumed_total",
            "Events handled successfully (including duplicates skipped by the inbox).",
            ["topic"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "leadpact_events_duplicate_total",
            "Redelivered events skipped because the inbox had them already.",
            ["topic"],
            registry=r,
        )
        self.events_failed = Counter(
            "leadpact_events_failed_total",
            "Handler attempts that raised (each retry counts).",
            ["topic"],
            registry=r,
        )
        self.event_batches_failed = Counter(
            "leadpact_event_batches_failed_total",
            "Batches of one partition rolled back and handed over one event at a time "
            "(a failing event, a lock conflict between batches, a storage error).",
            ["topic"],
            registry=r,
        )
        self.events_dead_lettered = Counter(
            "leadpact_events_dead_lettered_total",
            "Events moved to the dead-letter topic, by original topic.",
            ["topic"],
            registry=r,
        )
        self.events_published = Counter(
            "leadpact_events_published_total",
            "Events the outbox relay handed to the broker.",
            ["topic"],
            registry=r,
        )
        self.event_handling = Histogram(
            "leadpact_event_handling_seconds",
            "Time to handle one event, its transaction included.",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "leadpact_outbox_pending",
            "Events in the outbox not yet published (size of the last relay batch).",
            registry=r,
        )
        self.up = Gauge(
            "leadpact_service_info",
            "Constant 1, labelled with the service name.",
            ["service"],
            registry=r,
        )
        self.up.labels(service).set(1)
        self.consumer_lag = ConsumerLag()
        r.register(self.consumer_lag)
