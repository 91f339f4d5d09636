"""What the fault tests check after each fault, read straight from each service's own
PostgreSQL database and from the topics (as an auditor consumer group), not from a mock:

- every lead that got a 2xx is in every service exactly once;
- no customer is duplicated;
- every due breach was emitted exactly once (one event id per lead and clause).

The checks are per service (``CHECKS``), so a service joins them by adding its function;
``SERVICES`` lists the ones the fault tests start (all five).
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from leadpact.bus import EventBus, Message, bus_from_url
from leadpact.events import CloudEvent, decode
from leadpact.settings import Settings
from tests.e2e.journeys import qualifying_lead
from tests.fixtures.distributed import DistributedSystem
from tests.fixtures.waiting import eventually

SERVICES = ("intake", "scoring", "sla-monitor", "crm-sync", "feedback")


def make_bus(bus_url: str) -> EventBus:
    return bus_from_url(
        Settings(
            bus_url=bus_url,
            kafka_enable_idempotence=False,
            kafka_partitions=3,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
        )
    )


async def post_leads(
    intake: httpx.AsyncClient, count: int, pause: float = 0.02, timeout: float = 10
) -> list[dict[str, Any]]:
    """Post ``count`` leads one after another; keep those answered 2xx (the promise)."""
    accepted = []
    for _ in range(count):
        lead = a_new_person()
        try:
            answer = await intake.post("/v1/leads", json=lead, timeout=timeout)
        except httpx.HTTPError:
            continue
        if answer.is_success:
            accepted.append({**lead, "lead_id": answer.json()["lead_id"]})
        await asyncio.sleep(pause)  # a steady trickle of leads, not a timing assertion
    return accepted


FIRST = ["Ana", "Luis", "Marta", "Jordi", "Elena", "Pablo", "Nuria", "Iker", "Sara", "Hugo"]
LAST = ["García", "Ferrer", "Ortega", "Vidal", "Moreno", "Navarro", "Serra", "Blanco", "Roig"]


def a_new_person() -> dict[str, Any]:
    """A qualifying lead of a person nobody has seen: its own email, phone, name and
    company, so entity resolution has no reason to fold two test leads into one customer."""
    tag = uuid.uuid4().hex[:8]
    return {
        **qualifying_lead(),
        "email": f"{random.choice(FIRST).lower()}.{tag}@co-{tag}.example",
        "first_name": f"{random.choice(FIRST)}-{tag[:4]}",
        "last_name": f"{random.choice(LAST)} {tag[4:]}",
        "company": f"Company {tag}",
    }


# --- reading each service's database -------------------------------------------------------


def _dsn(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


@asynccontextmanager
async def connect(system: DistributedSystem, service: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(_dsn(system.databases[service]), timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


Problems = list[str]
Check = Callable[[asyncpg.Connection, list[str], list[dict[str, Any]]], Awaitable[Problems]]


def _per_lead(rows: Iterable[Any], ids: list[str], what: str) -> Problems:
    """Exactly one row counted per lead id: 'missing' or 'N times' otherwise."""
    counts = {r[0]: r[1] for r in rows}
    problems = [f"{i}: {what} missing" for i in ids if i not in counts]
    problems += [f"{i}: {what} {n} times" for i, n in counts.items() if n != 1]
    return problems


async def _intake(conn: asyncpg.Connection, ids: list[str], _: list[dict[str, Any]]) -> Problems:
    rows = await conn.fetch("SELECT id, count(*) FROM leads WHERE id = ANY($1) GROUP BY id", ids)
    return _per_lead(rows, ids, "intake lead")


async def _scoring(conn: asyncpg.Connection, ids: list[str], _: list[dict[str, Any]]) -> Problems:
    leads = await conn.fetch(
        "SELECT lead_id, count(*) FROM scoring_leads WHERE lead_id = ANY($1) GROUP BY 1", ids
    )
    scores = await conn.fetch(
        "SELECT lead_id, count(*) FROM scores WHERE lead_id = ANY($1) GROUP BY 1", ids
    )
    problems = _per_lead(leads, ids, "scoring lead") + _per_lead(scores, ids, "score")
    twice = [r[0] for r in scores if r[1] > 1]
    if twice:  # say how: which trigger scored it again, and when
        rows = await conn.fetch(
            "SELECT lead_id, trigger, tier, scored_at FROM scores WHERE lead_id = ANY($1)", twice
        )
        problems.append(f"scored more than once: {[tuple(r) for r in rows]} (duplicated)")
    return problems


async def _sla(conn: asyncpg.Connection, ids: list[str], _: list[dict[str, Any]]) -> Problems:
    rows = await conn.fetch(
        "SELECT lead_id, count(*) FROM sla_deadlines"
        " WHERE clause = 'first_contact' AND lead_id = ANY($1) GROUP BY 1",
        ids,
    )
    return _per_lead(rows, ids, "first-contact deadline")


async def _crm(conn: asyncpg.Connection, ids: list[str], leads: list[dict[str, Any]]) -> Problems:
    links = await conn.fetch(
        "SELECT lead_id, count(*) FROM customer_leads WHERE lead_id = ANY($1) GROUP BY 1", ids
    )
    problems = _per_lead(links, ids, "customer link")
    # Each test lead is a new person: one customer each...
    people = await conn.fetchval(
        "SELECT count(DISTINCT customer_id) FROM customer_leads WHERE lead_id = ANY($1)", ids
    )
    if not problems and people != len(ids):
        problems.append(f"{len(ids)} leads of different people linked to {people} customers")
    # ...and no customer record beside those that hold a lead (a second record made for a
    # person already known, by a redelivered event, would hold none).
    merged = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'customers' AND column_name = 'merged_into'"
    )
    orphans = await conn.fetchval(
        "SELECT count(*) FROM customers c WHERE NOT EXISTS"
        " (SELECT 1 FROM customer_leads l WHERE l.customer_id = c.id)"
        + (" AND c.merged_into IS NULL" if merged else "")
    )
    if orphans:
        problems.append(f"{orphans} customer(s) without a lead: duplicated")
    return problems


async def _feedback(conn: asyncpg.Connection, ids: list[str], _: list[dict[str, Any]]) -> Problems:
    """feedback folds each lead's events into one ``fb_leads`` row: it must hold the lead's
    creation (``lead.created``) and its MQL time (``lead.scored``, every test lead is an
    MQL), and the creation must be one attribution touchpoint, not one per delivery."""
    leads = await conn.fetch(
        "SELECT lead_id, count(*) FROM fb_leads WHERE lead_id = ANY($1)"
        " AND created_at IS NOT NULL AND mql_at IS NOT NULL GROUP BY 1",
        ids,
    )
    touches = await conn.fetch(
        "SELECT lead_id, count(*) FROM fb_touchpoints"
        " WHERE kind = 'lead.created' AND lead_id = ANY($1) GROUP BY 1",
        ids,
    )
    return _per_lead(leads, ids, "feedback lead (created and MQL)") + _per_lead(
        touches, ids, "feedback creation touchpoint"
    )


async def _crm_api(client: httpx.AsyncClient, leads: list[dict[str, Any]]) -> Problems:
    """crm-sync finds each person by email, with exactly their one lead."""
    problems = []
    for lead in leads:
        found = await client.get("/v1/customers/lookup", params={"email": lead["email"]})
        customer = found.json().get("customer") if found.status_code == 200 else None
        if not customer or customer.get("lead_ids") != [lead["lead_id"]]:
            problems.append(f"{lead['lead_id']}: crm-sync lookup gives {customer}")
    return problems


CHECKS: dict[str, Check] = {
    "intake": _intake,
    "scoring": _scoring,
    "sla-monitor": _sla,
    "crm-sync": _crm,
    "feedback": _feedback,
}


async def problems_with(system: DistributedSystem, leads: list[dict[str, Any]]) -> Problems:
    ids = [lead["lead_id"] for lead in leads]
    found: Problems = []
    for service, check in CHECKS.items():
        if service in system.databases:
            async with connect(system, service) as conn:
                found += await check(conn, ids, leads)
    if not found and "crm-sync" in system.clients:
        found += await _crm_api(system["crm-sync"], leads)
    return found


async def outboxes_empty(system: DistributedSystem) -> bool:
    for service in system.databases:
        async with connect(system, service) as conn:
            if await conn.fetchval("SELECT count(*) FROM outbox"):
                return False
    return True


async def every_lead_everywhere_once(
    system: DistributedSystem, leads: list[dict[str, Any]], timeout: float = 60
) -> None:
    """Wait until every lead is in every service exactly once; then, once every outbox is
    drained (nothing more in flight from the services), check again: still exactly once."""
    last: Problems = []

    async def complete() -> bool:
        last[:] = await problems_with(system, leads)
        repeated = [p for p in last if " times" in p or "duplicated" in p]
        if repeated:
            raise AssertionError(f"duplicated: {repeated[:10]}")
        return not last

    try:
        await eventually(complete, timeout, interval=0.5)
        await eventually(lambda: outboxes_empty(system), timeout, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{len(last)} problem(s): {last[:10]}") from exc
    assert await problems_with(system, leads) == []


# --- the auditor: what was really published ------------------------------------------------


class Auditor:
    """Reads topics as an extra consumer group and keeps every message (raw and decoded)."""

    def __init__(self, bus_url: str, topics: list[str]) -> None:
        self.bus = make_bus(bus_url)
        self.topics = topics
        self.raw: dict[str, list[Message]] = defaultdict(list)
        self.events: dict[str, list[CloudEvent[Any]]] = defaultdict(list)

    async def __aenter__(self) -> Auditor:
        await self.bus.start()
        await self.bus.subscribe(f"auditor-{uuid.uuid4().hex[:6]}", self.topics, self._seen)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.stop()

    async def _seen(self, msg: Message) -> None:
        self.raw[msg.topic].append(msg)
        self.events[msg.topic].append(decode(msg.value))

    def ids_by_lead(self, topic: str) -> dict[tuple[str, str], set[str]]:
        """Distinct event ids per (lead, clause) — redelivery of one id is not a repeat."""
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for event in self.events[topic]:
            found[(event.data.lead_id, getattr(event.data, "clause", ""))].add(event.id)
        return found


async def every_breach_once(
    system: DistributedSystem,
    auditor: Auditor,
    lead_ids: list[str],
    clause: str = "first_contact",
    timeout: float = 60,
) -> None:
    """Each lead's ``clause`` deadline is breached in sla-monitor's store, and exactly one
    ``sla.breached`` (one event id) went out for it; nothing else breached twice."""

    async def breached_in_store() -> set[str]:
        async with connect(system, "sla-monitor") as conn:
            rows = await conn.fetch(
                "SELECT lead_id FROM sla_deadlines WHERE status = 'breached'"
                " AND clause = $1 AND lead_id = ANY($2)",
                clause,
                lead_ids,
            )
        return {r[0] for r in rows}

    ours = set(lead_ids)

    def published() -> set[str]:
        # Only this test's leads: the session broker also carries earlier tests' events.
        repeated = {
            k: v
            for k, v in auditor.ids_by_lead("sla.breached").items()
            if len(v) > 1 and k[0] in ours
        }
        assert not repeated, f"breaches emitted more than once: {repeated}"
        return {lead for lead, c in auditor.ids_by_lead("sla.breached") if c == clause}

    await eventually(lambda: _superset(breached_in_store(), lead_ids), timeout, interval=0.5)
    await eventually(lambda: set(lead_ids) <= published(), timeout, interval=0.2)
    await eventually(lambda: outboxes_empty(system), timeout, interval=0.2)
    published()  # still no repeat once everything went out


async def _superset(found: Awaitable[set[str]], wanted: list[str]) -> bool:
    return set(wanted) <= await found


# --- metrics: how far the consumers got -----------------------------------------------------


async def counter(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The sum of a Prometheus counter over the series matching ``labels``."""
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}(?:{{(.*)}})? ([0-9.e+-]+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total
