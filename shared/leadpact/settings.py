"""Settings read from ``LEADPACT_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CONTRACT = Path(__file__).parent / "contracts" / "default.yaml"


class ApiKeyEntry(BaseModel):
    """One API key of the management routes: its name, the hex SHA-256 of the secret (the
    secret itself is never configured) and its scopes (see :mod:`leadpact.apikeys`)."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    scopes: list[str]


class Settings(BaseSettings):
    """Everything a service needs to know about its surroundings.

    The bus and the database are chosen here, by URL, never by code paths in the services.
    """

    model_config = SettingsConfigDict(env_prefix="LEADPACT_", extra="ignore")

    bus_url: str = Field("memory://", description="memory:// or kafka://host:port[,host:port]")
    memory_bus_retain: int = Field(
        10_000,
        ge=1,
        description="memory:// bus: messages kept per partition beyond what every consumer "
        "group has read (older ones are dropped)",
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///var/leadpact.db",
        description="sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db",
    )
    contract_path: Path = Field(DEFAULT_CONTRACT, description="SLA contract YAML file")
    host: str = "127.0.0.1"
    port: int = 0
    kafka_enable_idempotence: bool = Field(
        True, description="Idempotent producer; must be false against tansu"
    )
    kafka_partitions: int = Field(6, description="Partitions for topics leadpact creates")
    kafka_replication_factor: int = 1
    kafka_client_id: str = "leadpact"
    kafka_session_timeout_ms: int = Field(
        10_000, description="Consumer group session timeout; tansu holds a join for half of it"
    )
    kafka_heartbeat_interval_ms: int = 1_000
    kafka_fetch_max_wait_ms: int = Field(100, description="Longest a fetch waits for data")
    consumer_retries: int = Field(3, description="Handler attempts before dead-lettering")
    consumer_batch_max: int = Field(
        100,
        ge=1,
        description="Most messages of one partition handled in one transaction (1: one by one)",
    )
    relay_poll_seconds: float = Field(0.5, description="Outbox relay poll when not woken")
    relay_linger_seconds: float = Field(
        0.02,
        ge=0,
        description="After a pass that published rows, the outbox relay waits this long "
        "before the next, so that under load one pass takes the events of several commits",
    )
    gc_gen0_threshold: int = Field(
        5000,
        ge=0,
        description="While serving: the startup heap frozen and the young generation collected "
        "every this many allocations (CPython: 700); 0 leaves the collector as it is",
    )
    log_level: str = "INFO"
    log_json: bool = True
    crm_sync_url: str = Field("http://127.0.0.1:8005", description="crm-sync base URL")
    require_api_key: bool = Field(
        False,
        description="Management routes need an X-API-Key (off for `make run`; on in production)",
    )
    api_keys: list[ApiKeyEntry] = Field(
        default_factory=list,
        description='JSON list of {"name", "sha256", "scopes"} (`leadpact keys new`)',
    )
