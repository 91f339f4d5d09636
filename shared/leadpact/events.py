"""CloudEvents 1.0 envelope (structured JSON mode) and the data model of every event.

Every event is keyed by lead id (customer id for ``customer.*``): the key is the CloudEvents
``subject`` and the Kafka message key, so one lead's events stay in order on one partition.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TYPE_PREFIX = "io.leadpact."
TYPE_SUFFIX = ".v1"


class EventData(BaseModel):
    """Base of every event payload. ``topic`` names the bus topic the event travels on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str]

    @classmethod
    def event_type(cls) -> str:
        return f"{TYPE_PREFIX}{cls.topic}{TYPE_SUFFIX}"


# ---- lead.created ---------------------------------------------------------------------


class LeadSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    platform: str | None = None
    campaign: str | None = None
    ad: str | None = None
    form: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    marketing: bool = False
    text: str | None = None
    given_at: datetime | None = None


class LeadCreated(EventData):
    topic: ClassVar[str] = "lead.created"
    lead_id: str
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    company_size: int | None = None
    industry: str | None = None
    country: str | None = None
    source: LeadSource = LeadSource()
    consent: Consent | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    existing_customer: bool | None = None
    customer_lead_ids: list[str] = Field(
        default_factory=list,
        description="earlier leads of the customer crm-sync recognised (for its account owner)",
    )
    raw_ref: str | None = None
    created_at: datetime


class LeadActivity(EventData):
    topic: ClassVar[str] = "lead.activity"
    lead_id: str
    activity: str = Field(description="page_viewed, content_downloaded, email_opened, ...")
    detail: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime


Tier = Literal["mql", "nurture", "disqualified"]


class LeadScored(EventData):
    topic: ClassVar[str] = "lead.scored"
    lead_id: str
    points: int
    probability: float | None = None
    tier: Tier
    reasons: list[str] = Field(default_factory=list)
    model_version: str | None = None
    source: str | None = Field(None, description="lead source platform, for breach labels")
    scored_at: datetime


Channel = Literal["phone", "email", "linkedin", "whatsapp", "meeting"]
Outcome = Literal["connected", "voicemail", "no_answer", "replied"]


class LeadContacted(EventData):
    topic: ClassVar[str] = "lead.contacted"
    lead_id: str
    channel: Channel
    outcome: Outcome
    owner: str | None = None
    contacted_at: datetime


class LeadAccepted(EventData):
    topic: ClassVar[str] = "lead.accepted"
    lead_id: str
    owner: str | None = None
    accepted_at: datetime


class LeadRejected(EventData):
    topic: ClassVar[str] = "lead.rejected"
    lead_id: str
    reason: str = Field(description="one of the contract's rejection reason codes")
    note: str | None = None
    owner: str | None = None
    rejected_at: datetime


class LeadRecycled(EventData):
    topic: ClassVar[str] = "lead.recycled"
    lead_id: str
    reason: str
    recycled_at: datetime


class DealClosed(EventData):
    topic: ClassVar[str] = "deal.closed"
    lead_id: str
    won: bool
    amount: Decimal = Decimal("0")
    currency: str = "EUR"
    owner: str | None = None
    closed_at: datetime


Clause = Literal["first_contact", "attempts", "outcome"]


class SlaAtRisk(EventData):
    topic: ClassVar[str] = "sla.at_risk"
    lead_id: str
    clause: Clause
    owner: str | None = None
    deadline: datetime
    remaining_seconds: float


class SlaBreached(EventData):
    topic: ClassVar[str] = "sla.breached"
    lead_id: str
    clause: Clause
    owner: str | None = None
    source: str | None = None
    deadline: datetime
    late_seconds: float
    detected_at: datetime
    team: str | None = Field(default=None, description="the owner's team, where routing knows it")


class LeadAssigned(EventData):
    """An MQL got its owner: by a routing rule, by the CRM, or by a person reassigning it."""

    topic: ClassVar[str] = "lead.assigned"
    lead_id: str
    owner: str
    team: str | None = None
    rule: str | None = Field(default=None, description="routing rule that matched, if any")
    reason: Literal["routing", "crm", "reassigned", "escalation", "account_owner"] = "routing"
    previous_owner: str | None = None
    by: str | None = Field(default=None, description="who reassigned it, for manual changes")
    note: str | None = Field(default=None, description="why, in the words of who reassigned it")
    contract_version: str | None = None
    assigned_at: datetime


class PrivacyErased(EventData):
    """A person asked to be forgotten: every service removes their personal fields.

    Keyed by the hashed email so the erasure request itself carries no personal data."""

    topic: ClassVar[str] = "privacy.erased"
    subject_hash: str = Field(description="sha256 hex of the normalised email")
    lead_ids: list[str] = Field(default_factory=list)
    customer_id: str | None = None
    erased_at: datetime


class CustomerUpdated(EventData):
    topic: ClassVar[str] = "customer.updated"
    customer_id: str
    fields: dict[str, Any]
    sources: dict[str, str] = Field(default_factory=dict)
    conflicts: list[dict[str, Any]] = Field(default_factory=list)


EVENT_MODELS: dict[str, type[EventData]] = {
    m.topic: m
    for m in (
        LeadCreated,
        LeadActivity,
        LeadScored,
        LeadContacted,
        LeadAccepted,
        LeadRejected,
        LeadRecycled,
        DealClosed,
        SlaAtRisk,
        SlaBreached,
        LeadAssigned,
        CustomerUpdated,
        PrivacyErased,
    )
}
TOPICS: tuple[str, ...] = tuple(EVENT_MODELS)

D = TypeVar("D", bound=EventData)


class CloudEvent(BaseModel, Generic[D]):
    """A CloudEvents 1.0 envelope in structured JSON mode, with the ``contractversion``
    extension attribute."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    time: datetime
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    contractversion: str | None = None
    data: D

    @property
    def topic(self) -> str:
        return topic_of_type(self.type)

    def to_json(self) -> bytes:
        # pydantic's own serializer straight to bytes: the same bytes as
        # ``orjson.dumps(self.model_dump(mode="json"))`` (checked on generated events with
        # any JSON in ``attributes``/``detail``), without building the dict first (~2x faster).
        return self.__pydantic_serializer__.to_json(self)


class InvalidEvent(ValueError):
    """The bytes on the bus are not a valid leadpact CloudEvent; goes to the dead-letter topic."""


def topic_of_type(event_type: str) -> str:
    if not (event_type.startswith(TYPE_PREFIX) and event_type.endswith(TYPE_SUFFIX)):
        raise InvalidEvent(f"type: {event_type!r} is not an io.leadpact.*.v1 type")
    return event_type[len(TYPE_PREFIX) : -len(TYPE_SUFFIX)]


@functools.cache
def envelope_model(data_model: type[EventData]) -> type[CloudEvent[Any]]:
    """``CloudEvent[data_model]``, built once: pydantic keeps parametrised models only weakly,
    so without a strong reference every event rebuilt its envelope class (the largest single
    cost of emitting an event in a profile of ``bench/e2e``)."""
    return CloudEvent[data_model]  # type: ignore[valid-type]


def envelope(
    data: EventData, *, source: str, time: datetime, contract_version: str | None = None
) -> CloudEvent[Any]:
    """Wrap ``data`` in an envelope whose subject (and bus key) is its lead or customer id
    (an erasure of a person no service linked to a customer is keyed by the email's hash)."""
    subject = (
        getattr(data, "lead_id", None)
        or getattr(data, "customer_id", None)
        or getattr(data, "subject_hash", None)
    )
    if not subject:
        raise ValueError(f"{type(data).__name__} has no lead_id or customer_id to key it")
    return envelope_model(type(data))(
        source=source,
        type=data.event_type(),
        time=time,
        subject=subject,
        contractversion=contract_version,
        data=data,
    )


def decode(raw: bytes) -> CloudEvent[Any]:
    """Parse and validate one event; raise :class:`InvalidEvent` naming the bad field."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent("event is not a JSON object")
    topic = topic_of_type(str(doc.get("type", "")))
    model = EVENT_MODELS.get(topic)
    if model is None:
        raise InvalidEvent(f"type: unknown event type {doc.get('type')!r}")
    try:
        return envelope_model(model).model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidEvent(f"{where}: {first['msg']}") from exc
