"""Pick the bus implementation from the URL in settings."""

from __future__ import annotations

from leadpact.bus.base import EventBus
from leadpact.settings import Settings


def bus_from_url(settings: Settings) -> EventBus:
    url = settings.bus_url
    if url.startswith("memory://"):
        from leadpact.bus.memory import MemoryBus

        return MemoryBus(
            partitions=settings.kafka_partitions,
            retries=settings.consumer_retries,
            batch_max=settings.consumer_batch_max,
            retain=settings.memory_bus_retain,
        )
    if url.startswith("kafka://"):
        from leadpact.bus.kafka import KafkaBus

        return KafkaBus(
            bootstrap_servers=url.removeprefix("kafka://").rstrip("/"),
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            enable_idempotence=settings.kafka_enable_idempotence,
            client_id=settings.kafka_client_id,
            retries=settings.consumer_retries,
            batch_max=settings.consumer_batch_max,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        )
    raise ValueError(f"LEADPACT_BUS_URL: unsupported scheme in {url!r} (memory:// or kafka://)")
