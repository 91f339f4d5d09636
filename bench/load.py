"""A load-test scenario to point at any leadpact deployment (yours, not only ours).

    python -m bench.load --intake http://127.0.0.1:8001 --rate 300 --seconds 20

Open loop: leads are sent at a fixed rate whatever the answers' latency, as ad platforms do,
so queueing shows up as latency instead of being hidden. Bounded by --seconds and --max.
Prints one JSON line: sent, accepted, errors, achieved rate, latency p50/p95/p99 in ms, seed.

The leads are, by default, people at many companies (--companies 3000, drawn Zipf-like so
a few recur often and most rarely, as firm sizes do), with generated names, varied titles and
company sizes (50 and up): what a deployment sees, and what crm-sync's entity resolution is
sized for. By default every title is a senior one, so every lead is an MQL under the default
contract and goes the whole way (scored, owner assigned, SLA deadlines armed), which is what
bench.e2e times; --mql-share 0.4 mixes in leads that stop at scoring.
``--companies 1`` is the old worst case: every lead at "Acme Robotics", same title, same name
pattern, so each lead is a match candidate of every earlier one. Every lead is a different
person (distinct email and phone: intake folds resubmissions). ``--seed`` makes a run's leads
reproducible; without it each run draws a fresh seed, so runs against one deployment do not
resubmit each other's people.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import secrets
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

# Open requests at most; more would queue inside the client's connection pool, which costs
# the client CPU in proportion to the queue.
IN_FLIGHT = 64
TIMEOUT_SECONDS = 30.0
COMPANIES = 3000
ZIPF_EXPONENT = 1.0
"""Firm sizes follow Zipf's law with an exponent close to 1 (Axtell, Science 2001); leads
from a company are taken to follow its size. With 3,000 companies the most frequent one
sends ~12 % of the leads and half of them send one lead in ~2,000."""
LARGEST_COMPANY = 60_000  # employees of the rank-1 company; rank k has about this / k


def words(text: str) -> tuple[str, ...]:
    """The distinct words of ``text``, in order: long lists of names read better as prose."""
    return tuple(dict.fromkeys(text.split()))


FIRST_NAMES = words(
    "Ana Lucía María Carmen Laura Marta Elena Sara Paula Julia Irene Alba Clara Nuria Pilar "
    "Rocío Beatriz Cristina Raquel Silvia Olivia Emma Sophie Charlotte Amelia Grace Hannah "
    "Chloe Emily Jessica Rachel Megan Claire Anna Lena Mia Leonie Katrin Sabine Ines Chiara "
    "Giulia Francesca Elisa Camille Manon Léa Inès Chloé Margaux Zofia Agnieszka Marta Joana "
    "Beatriz Sanne Fleur Eva Ingrid Astrid Freya Aoife Niamh Priya Ananya Yuki Mei Fatima "
    "Javier Carlos José Antonio Manuel David Daniel Pablo Sergio Jorge Alberto Álvaro Diego "
    "Adrián Raúl Iván Rubén Óscar Marcos Hugo James Oliver Thomas George Harry Jack William "
    "Samuel Joseph Benjamin Lucas Henry Liam Noah Ethan Max Felix Jonas Lukas Paul Tobias "
    "Matthias Stefan Marco Luca Matteo Giorgio Alessandro Louis Hugo Théo Julien Antoine "
    "Piotr Tomasz Krzysztof João Tiago Pedro Daan Bram Sven Lars Erik Oisín Arjun Rahul Kenji"
)
LAST_NAMES = words(
    "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez "
    "Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez "
    "Vázquez Ramos Gil Ramírez Serrano Blanco Molina Morales Suárez Ortega Delgado Castro "
    "Ortiz Rubio Marín Sanz Iglesias Núñez Medina Garrido Santos Castillo Cortés Lozano "
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans "
    "Walker White Roberts Green Hall Wood Jackson Clarke Hughes Edwards Turner Murphy O'Brien "
    "Kelly Walsh Byrne Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz "
    "Hoffmann Koch Richter Klein Wolf Schröder Neumann Braun Rossi Russo Ferrari Esposito "
    "Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa Martin Bernard Dubois "
    "Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre Michel Nowak "
    "Kowalski Wiśniewski Wójcik Kowalczyk Silva Santos Ferreira Pereira Oliveira Costa "
    "Rodrigues de-Jong Jansen de-Vries van-den-Berg Bakker Visser Smit Andersson Johansson "
    "Larsson Nielsen Hansen Jensen Patel Sharma Singh Kumar Tanaka Suzuki Chen Wang Li Zhang"
)
# Under the default contract a lead is an MQL with a title naming seniority (head, director,
# VP, chief, founder) at a company of 50 people or more; sla-monitor arms deadlines for MQLs
# only, so these decide how much of the pipeline a lead goes through.
SENIOR_TITLES = (
    "Head of Operations",
    "Head of IT",
    "Head of Sales",
    "Head of Product",
    "Head of Procurement",
    "Head of Supply Chain",
    "Chief Executive Officer",
    "Chief Operating Officer",
    "Chief Technology Officer",
    "Chief Financial Officer",
    "Chief Marketing Officer",
    "CEO",
    "CTO",
    "COO",
    "Founder",
    "Co-founder",
    "Managing Director",
    "Finance Director",
    "Purchasing Director",
    "Sales Director",
    "HR Director",
    "Director of Engineering",
    "Operations Director",
    "VP Engineering",
    "VP Sales",
    "VP Operations",
)
OTHER_TITLES = (
    "Operations Manager",
    "General Manager",
    "Engineering Manager",
    "IT Manager",
    "Controller",
    "Procurement Manager",
    "Account Executive",
    "Business Development Manager",
    "Marketing Manager",
    "Growth Lead",
    "Product Manager",
    "Plant Manager",
    "Supply Chain Manager",
    "Logistics Coordinator",
    "Office Manager",
    "Analyst",
    "Consultant",
)
SMALLEST_COMPANY = 50
SYLLABLES = words(
    "al ar ba be bo ca ce co da de di do el en fa fe fi ga ge gra ka ki la le li lo lu ma me "
    "mi mo na ne no or pa pe pi po qua ra re ri ro sa se si so ta te ti to tra tri va ve vi "
    "vo xa ze zo"
)
SECTORS = words(
    "Robotics Logistics Analytics Systems Foods Energy Health Labs Software Pharma Motors "
    "Textiles Logística Construcciones Ingeniería Consulting Capital Media Retail Metals "
    "Plastics Packaging Solar Water Farms Bio Telecom Security Aerospace Marine Furniture "
    "Print Travel Insurance Finance Education Cloud Devices Chemicals Materials"
)
LEGAL_FORMS = ("SL", "SA", "GmbH", "Ltd", "Inc", "BV", "SAS", "SpA", "AB", "")
PHONES = 10**8
"""Spanish mobiles are 6 and eight digits: a lead's phone is ``+346`` and a number below
this, drawn from a permutation of the lead's index so no two leads of a run share one."""


@dataclass(frozen=True)
class Company:
    name: str
    domain: str
    size: int


WORST_CASE = Company("Acme Robotics", "acme-robotics.example", 240)


def companies(count: int) -> list[Company]:
    """``count`` distinct companies, most frequent first: the same list for every run (a
    deployment sees the same companies again from one run to the next). ``1`` is the old
    single company."""
    if count == 1:
        return [WORST_CASE]
    rng = random.Random(f"leadpact companies {count}")
    made: list[Company] = []
    domains: set[str] = set()
    while len(made) < count:
        root = "".join(rng.choices(SYLLABLES, k=rng.choice((2, 2, 3)))).capitalize()
        sector = rng.choice(SECTORS)
        domain = f"{ascii_slug(root)}-{ascii_slug(sector)}.example"
        if domain in domains:
            continue
        domains.add(domain)
        rank = len(made) + 1
        size = SMALLEST_COMPANY + round(LARGEST_COMPANY / rank * rng.uniform(0.5, 2.0))
        name = f"{root} {sector} {rng.choice(LEGAL_FORMS)}".strip()
        made.append(Company(name, domain, size))
    return made


def ascii_slug(text: str) -> str:
    """``"Logística"`` → ``"logistica"``: names keep their accents, addresses are ASCII."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c if c.isalnum() else "-" for c in folded.lower()).strip("-")


class LeadMix:
    """Successive leads for one run: companies drawn Zipf-like, people generated.

    Deterministic for a given ``seed`` and company count. A person is unique in the run by
    construction (the run tag and the lead's index in the email, a permutation of the index
    in the phone), not by luck."""

    def __init__(
        self, companies_count: int = COMPANIES, seed: int | None = None, mql_share: float = 1.0
    ) -> None:
        self.seed = secrets.randbits(48) if seed is None else seed
        self.mql_share = mql_share
        self.companies = companies(companies_count)
        weights = [1 / rank**ZIPF_EXPONENT for rank in range(1, len(self.companies) + 1)]
        self._cumulative = list(itertools.accumulate(weights))
        self._rng = random.Random(self.seed)
        # a * i + b mod 10**8 is a permutation of the indexes when a is coprime to 10**8
        self._a = self._rng.randrange(1, PHONES // 10) * 10 + self._rng.choice((1, 3, 7, 9))
        self._b = self._rng.randrange(PHONES)
        self._tag = _base36(self.seed)

    def leads(self) -> Iterator[dict[str, Any]]:
        for i in itertools.count():
            yield self.lead(i)

    def lead(self, i: int) -> dict[str, Any]:
        """The ``i``-th lead; call in order (they share one random stream)."""
        if len(self.companies) == 1:
            return self._worst_case(i)
        rng = self._rng
        drawn = rng.random() * self._cumulative[-1]
        company = self.companies[
            min(bisect.bisect(self._cumulative, drawn), len(self.companies) - 1)
        ]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return {
            "email": f"{ascii_slug(first)}.{ascii_slug(last)}.{self._tag}{i}@{company.domain}",
            "phone": self._phone(i),
            "first_name": first,
            "last_name": last.replace("-", " "),
            "company": company.name,
            "title": rng.choice(SENIOR_TITLES if rng.random() < self.mql_share else OTHER_TITLES),
            "company_size": company.size,
            "source": {"platform": "loadtest", "campaign": "bench"},
        }

    def _worst_case(self, i: int) -> dict[str, Any]:
        """Every lead the same company, title and name pattern: the same blocking keys for
        all, so crm-sync compares each lead with every earlier one."""
        return {
            "email": f"load.{i}.{self._tag}@{WORST_CASE.domain}",
            "phone": self._phone(i),
            "first_name": "Load",
            "last_name": f"Test {i}",
            "company": WORST_CASE.name,
            "title": "Head of Operations",
            "company_size": WORST_CASE.size,
            "source": {"platform": "loadtest", "campaign": "bench"},
        }

    def _phone(self, i: int) -> str:
        return f"+346{(self._a * i + self._b) % PHONES:08d}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out + "x"  # a letter between the tag and the lead's index


@dataclass
class Outcome:
    started: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    seed: int | None = None

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    intake: str,
    rate: float,
    seconds: float,
    limit: int,
    api_key: str | None = None,
    in_flight: int = IN_FLIGHT,
    mix: LeadMix | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Outcome:
    """Post leads at ``rate`` per second for ``seconds`` (at most ``limit``); record the
    intended send time of each accepted lead id (for end-to-end measurements) and its
    latency from that time.

    At most ``in_flight`` requests are open at once; a lead due while all are busy waits its
    turn in the client, and that wait counts in its latency (timing from the schedule, not
    from the moment it could be sent, so a slow server is not flattered). Without the cap a
    server that fell behind left thousands of requests inside the client's connection pool,
    whose bookkeeping then cost the client a whole core.

    aiohttp, bodies encoded by orjson: 3-7x less CPU per request than httpx was, on the
    same cores as the system measured (notes/issue-9-load-client.md)."""
    mix = mix or LeadMix()
    outcome = Outcome(seed=mix.seed)
    url = URL(intake.rstrip("/") + "/v1/leads")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    slots = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    budget = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=budget) as session:

        async def one(body: bytes, due: float) -> None:
            async with slots:
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        status, payload = answer.status, await answer.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome.error(type(exc).__name__)
                    return
            if status != 202:
                outcome.error(str(status))
                return
            lead_id = orjson.loads(payload).get("lead_id")
            if lead_id is None:
                outcome.error("202 without lead_id")
                return
            outcome.latencies.append(time.time() - due)
            outcome.started[lead_id] = due

        tasks: list[asyncio.Task[None]] = []
        people = mix.leads()
        start = time.perf_counter()
        wall_start = time.time()
        i = 0
        while i < limit and time.perf_counter() - start < seconds:
            offset = i / rate
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = orjson.dumps(next(people))
            tasks.append(asyncio.create_task(one(body, wall_start + offset)))
            i += 1
        outcome.sent = i
        await asyncio.gather(*tasks)
    return outcome


def summary(outcome: Outcome, seconds: float) -> dict[str, Any]:
    ms = [x * 1000 for x in outcome.latencies]
    return {
        "sent": outcome.sent,
        "accepted": len(outcome.latencies),
        "errors": outcome.errors,
        "rate_per_s": round(len(outcome.latencies) / seconds, 1),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "seed": outcome.seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intake", default="http://127.0.0.1:8001")
    parser.add_argument("--rate", type=float, default=100.0, help="leads per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max", type=int, default=100_000, help="stop after this many leads")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="open requests at most")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="per request, s")
    parser.add_argument("--record", default=None, help="write {lead_id: send time} here")
    parser.add_argument(
        "--companies",
        type=int,
        default=COMPANIES,
        help="companies the leads come from, Zipf-like; 1 = the single-company worst case",
    )
    parser.add_argument("--seed", type=int, default=None, help="same seed, same leads")
    parser.add_argument(
        "--mql-share",
        type=float,
        default=1.0,
        help="share of leads with a senior title (MQLs under the default contract)",
    )
    args = parser.parse_args()
    if args.companies < 1:
        parser.error("--companies must be at least 1")
    if not 0 <= args.mql_share <= 1:
        parser.error("--mql-share must be between 0 and 1")
    mix = LeadMix(args.companies, args.seed, args.mql_share)
    started = time.perf_counter()
    outcome = asyncio.run(
        run(
            args.intake,
            args.rate,
            args.seconds,
            args.max,
            args.api_key,
            args.in_flight,
            mix,
            args.timeout,
        )
    )
    print(json.dumps(summary(outcome, time.perf_counter() - started)))
    if args.record:
        with open(args.record, "w") as out:
            json.dump(outcome.started, out)


if __name__ == "__main__":
    main()
