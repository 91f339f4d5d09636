"""Closed-loop load client: N connections each posting leads back to back, bounded by a
duration and a count. ``python -m bench.intake.client URL CONNECTIONS SECONDS MAX``; prints
one JSON line: accepted, errors, seconds, rate, p50/p99 latency in ms, and the CPU seconds
this process used (so a run can tell whether the client, not the server, was the limit).

On 2 cores the client shares the machine with the server it measures: every microsecond it
spends per request is taken from the server, and if it cannot send faster than the server
answers, the figure is the client's. So it is written against ``asyncio.Protocol`` (no
stream readers, no line-by-line parsing) and builds each body by formatting one byte
template (no JSON encoder, no uuid per request); each lead is still a new person (a unique
email), as the intake benchmark needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

LEAD_TEMPLATE = orjson.dumps(
    {
        "email": "bench.%d.%s@acme-robotics.example",
        "first_name": "Bench",
        "last_name": "Lead %d",
        "company": "Acme Robotics",
        "title": "Head of Operations",
        "company_size": 240,
        "country": "ES",
        "source": {"platform": "bench", "campaign": "intake"},
    }
)
RUN = os.urandom(5).hex().encode()
"""Distinguishes this client's emails from any earlier run's (the dedup window is 30 days)."""


def lead(n: int) -> bytes:
    """The JSON body of lead ``n``: a new person each time."""
    return LEAD_TEMPLATE % (n, RUN, n)


class Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request in flight, its answer parsed from
    the Content-Length header (both servers answer with one)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[int] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc or ConnectionResetError("closed by server"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
                break
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(status)

    def post(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer


async def run(url: str, connections: int, seconds: float, limit: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST /v1/leads HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(limit))
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        exchange: Exchange | None = None
        while time.perf_counter() < deadline and (n := next(counter, None)) is not None:
            body = lead(n)
            sent = time.perf_counter()
            try:
                if exchange is None or exchange.closed.done():
                    _, exchange = await loop.create_connection(Exchange, host, port)
                code = str(await exchange.post(head % len(body) + body))
            except (OSError, ValueError) as exc:
                code = type(exc).__name__
                exchange = None
            if code.startswith("2"):
                latencies.append(time.perf_counter() - sent)
            else:
                errors[code] = errors.get(code, 0) + 1

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    latencies.sort()

    def pct(q: float) -> float:
        return (
            1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0
        )

    return {
        "accepted": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rate": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.5), 2),
        "p99_ms": round(pct(0.99), 2),
        "client_cpu_seconds": round(cpu, 2),
    }


if __name__ == "__main__":
    url, connections, seconds, limit = sys.argv[1:5]
    print(json.dumps(asyncio.run(run(url, int(connections), float(seconds), int(limit)))))
