"""A load-test scenario to point at any leadpact deployment (yours, not only ours).

    python -m bench.load --intake http://127.0.0.1:8001 --rate 300 --seconds 20

Open loop: leads are sent at a fixed rate whatever the answers' latency, as ad platforms do,
so queueing shows up as latency instead of being hidden. Bounded by --seconds and --max.
Prints one JSON line: sent, accepted, errors, achieved rate, latency p50/p95/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

# Open requests at most; more would queue inside httpx's pool, which costs the client CPU
# in proportion to the queue.
IN_FLIGHT = 64


def lead(i: int) -> dict[str, Any]:
    """A different person each time: intake folds a lead of an email or phone it has seen
    into the first one, so a fixed phone would measure one lead."""
    return {
        "email": f"load.{i}.{uuid.uuid4().hex[:6]}@acme-robotics.example",
        "phone": f"+3461{random.randrange(10**7):07d}",
        "first_name": "Load",
        "last_name": f"Test {i}",
        "company": "Acme Robotics",
        "title": "Head of Operations",
        "company_size": 240,
        "source": {"platform": "loadtest", "campaign": "bench"},
    }


@dataclass
class Outcome:
    started: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0


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
) -> Outcome:
    """Post leads at ``rate`` per second for ``seconds`` (at most ``limit``); record the
    intended send time of each accepted lead id (for end-to-end measurements) and its
    latency from that time.

    At most ``in_flight`` requests are open at once; a lead due while all are busy waits its
    turn in the client, and that wait counts in its latency (timing from the schedule, not
    from the moment it could be sent, so a slow server is not flattered). Without the cap a
    server that fell behind left thousands of requests inside httpx's connection pool, whose
    bookkeeping then cost the client a whole core."""
    outcome = Outcome()
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    slots = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(base_url=intake, limits=limits, timeout=30) as client:
        tasks: list[asyncio.Task[None]] = []

        async def one(i: int, due: float) -> None:
            async with slots:
                try:
                    answer = await client.post("/v1/leads", json=lead(i), headers=headers)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    outcome.errors[key] = outcome.errors.get(key, 0) + 1
                    return
            if answer.status_code == 202:
                outcome.latencies.append(time.time() - due)
                outcome.started[answer.json()["lead_id"]] = due
            else:
                key = str(answer.status_code)
                outcome.errors[key] = outcome.errors.get(key, 0) + 1

        start = time.perf_counter()
        wall_start = time.time()
        i = 0
        while i < limit and time.perf_counter() - start < seconds:
            offset = i / rate
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, wall_start + offset)))
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intake", default="http://127.0.0.1:8001")
    parser.add_argument("--rate", type=float, default=100.0, help="leads per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max", type=int, default=100_000, help="stop after this many leads")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="open requests at most")
    parser.add_argument("--record", default=None, help="write {lead_id: send time} here")
    args = parser.parse_args()
    started = time.perf_counter()
    outcome = asyncio.run(
        run(args.intake, args.rate, args.seconds, args.max, args.api_key, args.in_flight)
    )
    print(json.dumps(summary(outcome, time.perf_counter() - started)))
    if args.record:
        with open(args.record, "w") as out:
            json.dump(outcome.started, out)


if __name__ == "__main__":
    main()
