"""Routing benchmark: 100,000 MQLs across 50 members in 5 teams with mixed working hours
(five timezones, two always-on members per team), mixed shares (1-3) and capacities (every
third member holds at most 6 open leads; each lead is accepted 500 leads later).

Each ``lead.scored`` goes through the real consumer path of the sla-monitor — inbox claim,
``on_lead_scored`` (rules, round-robin with its state in the database, ``lead.assigned`` in
the outbox, three deadlines armed with the owner), commit — on a file SQLite database (or
``--database postgresql+asyncpg://…``). The manual clock spreads the leads over Monday 00:00
to Thursday 11:20 UTC (3 s apart at 100,000), so members go in and out of their hours.

Figures: assignments per second (one consumer, serial), p50/p99 latency from receiving
``lead.scored`` to ``lead.assigned`` committed in the outbox, and the spread of assignments
per member against the fluid fair share (each lead's expected share split among the members
of its team available at that instant, by share): max absolute deviation in leads and as a
share of the mean per member.

Usage: ``python -m bench.routing [--leads 100000] [--database URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import delete

from bench.record import Figure, record
from leadpact.clock import ManualClock
from leadpact.contract import ContractBook, Routing, load_contract
from leadpact.db import Database
from leadpact.events import LeadAccepted, LeadScored, envelope
from leadpact.messaging import UnitOfWork, outbox
from leadpact.migrations import upgrade_async
from leadpact.settings import DEFAULT_CONTRACT
from sla_monitor.app import SERVICE
from sla_monitor.handlers import on_lead_accepted, on_lead_scored
from sla_monitor.metrics import SlaMetrics
from sla_monitor.notify.queue import Notifier
from sla_monitor.routing import store as routing_store
from sla_monitor.routing.domain import Candidate, LeadFacts, choose_team
from sla_monitor.routing.metrics import RoutingMetrics
from sla_monitor.settings import NotifySettings
from sla_monitor.watch import DeadlineWatch

TIMEZONES = ["Europe/Madrid", "Europe/London", "America/New_York", "Asia/Singapore", None]
SHARES = [1, 1, 1, 2, 2, 3, 1, 1, 2, 1]
COUNTRIES = ["ES", "PT", "DE", "AT", "US", "GB", "FR", "SG"]
ACCEPT_AFTER = 500
SPAN_SECONDS = 300_000  # Monday 00:00 to Thursday 11:20 UTC
CONSUMER = "leadpact-sla-monitor"


def routing_section() -> Routing:
    teams = []
    for t in range(5):
        members: list[dict[str, Any]] = []
        for m in range(10):
            tz = TIMEZONES[m % 5]
            member: dict[str, Any] = {"id": f"t{t}m{m}", "share": SHARES[m]}
            if tz is not None:
                member |= {"timezone": tz, "hours": {"from": "08:00", "to": "18:00"}}
            if m % 3 == 2:
                member["capacity"] = 6
            members.append(member)
        teams.append({"id": f"team{t}", "members": members})
    return Routing.model_validate(
        {
            "regions": {"iberia": ["ES", "PT"], "dach": ["DE", "AT"]},
            "teams": teams,
            "rules": [
                {"name": "large", "match": {"company_size": {"gte": 1000}}, "team": "team3"},
                {"name": "iberia", "match": {"region": ["iberia"]}, "team": "team0"},
                {"name": "dach", "match": {"region": ["dach"]}, "team": "team1"},
                {"name": "us", "match": {"country": ["US"]}, "team": "team2"},
            ],
            "fallback_team": "team4",
        }
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(leads: int, database: str | None) -> dict[str, Figure]:
    tmp = tempfile.TemporaryDirectory()
    url = database or f"sqlite+aiosqlite:///{Path(tmp.name) / 'routing.db'}"
    await upgrade_async(url, Path(SERVICE.migrations))
    routing = routing_section()
    contract = load_contract(DEFAULT_CONTRACT).model_copy(update={"routing": routing})
    book = ContractBook([contract])
    db, clock = Database(url), ManualClock(datetime(2026, 11, 2, 0, 0, tzinfo=UTC))
    registry = CollectorRegistry()
    sla_metrics, routing_metrics = SlaMetrics(registry), RoutingMetrics(registry)
    watch = DeadlineWatch(lambda: UnitOfWork(db, clock, "sla-monitor"), clock, sla_metrics)
    notifier = Notifier(NotifySettings(_env_file=None))  # type: ignore[call-arg]
    rng = random.Random(11)

    lead_ids = [str(uuid.uuid4()) for _ in range(leads)]
    facts = {
        lid: LeadFacts(
            country=rng.choice(COUNTRIES),
            company_size=rng.choice([10, 50, 200, 800, 2000]),
            probability=round(rng.random(), 2),
        )
        for lid in lead_ids
    }
    async with UnitOfWork(db, clock, "bench") as uow:  # lead.created arrived earlier
        for chunk in range(0, leads, 5000):
            await uow.session.execute(
                routing_store.LeadFactsRow.__table__.insert(),
                [
                    {
                        "lead_id": lid,
                        "country": facts[lid].country,
                        "company_size": facts[lid].company_size,
                        "created_at": clock.now(),
                    }
                    for lid in lead_ids[chunk : chunk + 5000]
                ],
            )
        await uow.commit()

    members = {m.id: m for t in routing.teams for m in t.members}
    team_of = {m.id: t.id for t in routing.teams for m in t.members}
    open_leads: Counter[str] = Counter()
    expected: dict[str, float] = dict.fromkeys(members, 0.0)
    actual: Counter[str] = Counter()
    latencies: list[float] = []
    pending: deque[tuple[str, str]] = deque()
    forced = 0
    step = SPAN_SECONDS / leads  # any --leads spans the same days

    async def handle(data: Any, handler: Any, **deps: Any) -> UnitOfWork:
        event = envelope(
            data, source="scoring", time=clock.now(), contract_version=contract.version
        )
        async with UnitOfWork(db, clock, "sla-monitor") as uow:
            assert await uow.claim(CONSUMER, event.id)
            await handler(event, uow, clock, **deps)
            await uow.commit()
        return uow

    started = time.perf_counter()
    for i, lid in enumerate(lead_ids):
        clock.advance(step)
        # The fluid fair share at this instant: split among the team's available members.
        f = facts[lid]
        team_id, _ = choose_team(routing, LeadFacts(country=f.country, company_size=f.company_size))
        for tid in (team_id, routing.fallback_team):
            team = routing.team(tid)
            assert team is not None
            avail = [
                m
                for m in team.members
                if Candidate(m, 0.0, open_leads[m.id]).unavailable(clock.now()) is None
            ]
            if avail:
                total = sum(m.share for m in avail)
                for m in avail:
                    expected[m.id] += m.share / total
                break
        else:
            forced += 1
        scored = LeadScored(
            lead_id=lid,
            points=80,
            probability=f.probability,
            tier="mql",
            source="bench",
            scored_at=clock.now(),
        )
        t0 = time.perf_counter()
        uow = await handle(
            scored,
            on_lead_scored,
            contracts=book,
            deadline_watch=watch,
            sla_metrics=sla_metrics,
            routing_metrics=routing_metrics,
            notifier=notifier,
        )
        latencies.append(time.perf_counter() - t0)
        owner = next(e.data.owner for e in uow.emitted if e.topic == "lead.assigned")
        actual[owner] += 1
        open_leads[owner] += 1
        pending.append((lid, owner))
        if len(pending) > ACCEPT_AFTER:
            done, who = pending.popleft()
            await handle(
                LeadAccepted(lead_id=done, accepted_at=clock.now()),
                on_lead_accepted,
                routing_metrics=routing_metrics,
            )
            open_leads[who] -= 1
        if i % 5000 == 4999:
            async with db.session() as session, session.begin():
                await session.execute(delete(outbox))  # what the relay would have done
            print(f"  {i + 1} leads, {time.perf_counter() - started:.0f} s", flush=True)
    wall = time.perf_counter() - started
    await db.dispose()
    tmp.cleanup()

    deviation = {m: actual[m] - expected[m] for m in members}
    worst = max(deviation, key=lambda m: abs(deviation[m]))
    mean = leads / len(members)
    per_team = Counter(team_of[m] for m in actual.elements())
    print(
        f"  per team: {dict(sorted(per_team.items()))}; worst member {worst}: "
        f"{actual[worst]} vs {expected[worst]:.1f} expected; forced {forced}"
    )
    return {
        "assignments_per_second": Figure(leads / sum(latencies), "1/s", "higher"),
        "wall_seconds_with_acceptances": Figure(wall, "s", "lower"),
        "p50_scored_to_assigned_ms": Figure(percentile(latencies, 0.50) * 1000, "ms", "lower"),
        "p99_scored_to_assigned_ms": Figure(
            percentile(latencies, 0.99) * 1000, "ms", "lower", "< 1000 (an owner within seconds)"
        ),
        "max_deviation_leads": Figure(abs(deviation[worst]), "leads", "lower"),
        "max_deviation_pct_of_mean": Figure(100 * abs(deviation[worst]) / mean, "%", "lower"),
        "members": Figure(len(members), "members"),
        "leads": Figure(leads, "leads"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--database", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    figures = asyncio.run(run(args.leads, args.database))
    backend = "postgresql" if args.database and "postgresql" in args.database else "sqlite"
    record(
        "routing"
        if args.leads == 100_000 and backend == "sqlite"
        else f"routing-{backend}-{args.leads}",
        figures,
        notes=f"{backend}; one consumer, serial; latency = consumer receives lead.scored "
        "until lead.assigned is committed in the outbox (bus transit excluded); deviation "
        "against the fluid fair share of the members available at each lead's instant.",
    )


if __name__ == "__main__":
    main()
