"""Closed-loop load client: N connections each posting leads back to back, bounded by a
duration and a count. ``python -m bench.intake.client URL CONNECTIONS SECONDS MAX``; prints
one JSON line: accepted, errors, seconds, rate, p50/p99 latency in ms."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson


def lead(n: int) -> dict[str, Any]:
    return {
        "email": f"bench.{n}.{uuid.uuid4().hex[:10]}@acme-robotics.example",
        "first_name": "Bench",
        "last_name": f"Lead {n}",
        "company": "Acme Robotics",
        "title": "Head of Operations",
        "company_size": 240,
        "country": "ES",
        "source": {"platform": "bench", "campaign": "intake"},
    }


class Connection:
    """One keep-alive HTTP/1.1 connection, written by hand: httpx costs more CPU per request
    than the servers under test, and on 2 cores the client must not be what is measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def run(url: str, connections: int, seconds: float, limit: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(limit))
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        conn = Connection(host, port)
        while time.perf_counter() < deadline and (n := next(counter, None)) is not None:
            sent = time.perf_counter()
            try:
                code = str(await conn.post("/v1/leads", orjson.dumps(lead(n))))
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                code = type(exc).__name__
                conn = Connection(host, port)
            if code.startswith("2"):
                latencies.append(time.perf_counter() - sent)
            else:
                errors[code] = errors.get(code, 0) + 1

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
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
    }


if __name__ == "__main__":
    url, connections, seconds, limit = sys.argv[1:5]
    print(json.dumps(asyncio.run(run(url, int(connections), float(seconds), int(limit)))))
