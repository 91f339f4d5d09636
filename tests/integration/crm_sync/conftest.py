"""crm-sync's integration fixtures: crm-sync alone, configured through its own settings,
and builders of signed Stripe and generic webhook requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from crm_sync.signatures import signature_header
from tests.fixtures.asgi import read_body
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually

STRIPE_SECRET = "whsec_test_secret"
WEBHOOK_SECRET = "generic-webhook-secret"

CrmFactory = Callable[..., Awaitable[EmbeddedSystem]]


@pytest.fixture
async def crm_factory(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CrmFactory]:
    """``await crm_factory(push_backoff_seconds=1, ...)`` starts crm-sync alone with these
    ``LEADPACT_CRM_SYNC_*`` settings on top of test defaults (both webhook secrets set)."""

    async def start(**settings: object) -> EmbeddedSystem:
        defaults: dict[str, object] = {
            "stripe_webhook_secrets": [STRIPE_SECRET],
            "webhook_secrets": [WEBHOOK_SECRET],
        }
        for name, value in {**defaults, **settings}.items():
            text = value if isinstance(value, str) else json.dumps(value)
            monkeypatch.setenv(f"LEADPACT_CRM_SYNC_{name.upper()}", text)
        return await system_factory(only=["crm-sync"])

    yield start


def now_ts(system: EmbeddedSystem) -> int:
    return int(system.clock.now().timestamp())


async def post_stripe(
    system: EmbeddedSystem,
    event: dict[str, Any],
    *,
    secret: str = STRIPE_SECRET,
    timestamp: int | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    raw = orjson.dumps(event)
    t = now_ts(system) if timestamp is None else timestamp
    header = signature_header(secret, t, raw)
    return await system["crm-sync"].post(
        "/v1/webhooks/stripe",
        content=raw if body is None else body,
        headers={"Stripe-Signature": header, "content-type": "application/json"},
    )


async def post_generic(
    system: EmbeddedSystem, source: str, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET
) -> httpx.Response:
    raw = orjson.dumps(event)
    header = signature_header(secret, now_ts(system), raw)
    return await system["crm-sync"].post(
        f"/v1/webhooks/{source}",
        content=raw,
        headers={"Webhook-Signature": header, "content-type": "application/json"},
    )


def stripe_customer(
    event_id: str,
    customer_id: str = "cus_1",
    *,
    kind: str = "customer.created",
    created: int = 1793610000,
    **fields: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": customer_id,
        "object": "customer",
        "email": "ana.garcia@acme.example",
        "name": "Ana García",
        "phone": None,
        "address": {
            "line1": "Calle Mayor 1",
            "line2": None,
            "city": "Madrid",
            "postal_code": "28013",
            "state": None,
            "country": "ES",
        },
        "metadata": {"company": "Acme Robotics"},
        "created": created,
    }
    obj.update(fields)
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": obj},
    }


def stripe_invoice(
    event_id: str,
    invoice_id: str = "in_1",
    customer_id: str = "cus_1",
    *,
    kind: str = "invoice.paid",
    created: int = 1793610000,
    **fields: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer_id,
        "customer_email": "ana.garcia@acme.example",
        "customer_name": "Ana García",
        "customer_address": {
            "line1": "Calle Mayor 1",
            "city": "Madrid",
            "postal_code": "28013",
            "country": "ES",
        },
        "customer_tax_ids": [{"type": "eu_vat", "value": "ESB12345678"}],
        "currency": "eur",
        "total": 90000,
        "amount_paid": 90000 if kind == "invoice.paid" else 0,
        "created": created,
        "status_transitions": {"paid_at": created + 60} if kind == "invoice.paid" else {},
        "discounts": [
            {
                "id": "di_1",
                "object": "discount",
                "coupon": {"id": "WELCOME10", "name": "Welcome 10%", "percent_off": 10},
            }
        ],
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": "il_1",
                    "description": "Pro plan",
                    "amount": 100000,
                    "currency": "eur",
                    "discount_amounts": [{"amount": 10000, "discount": "di_1"}],
                },
                {
                    "id": "il_2",
                    "description": "Setup",
                    "amount": 0,
                    "currency": "eur",
                    "discount_amounts": [],
                },
            ],
        },
    }
    obj.update(fields)
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": obj},
    }


class Target:
    """A real HTTP server in the test's event loop that records what it receives and answers
    with the queued status codes (200 once they run out)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.answers: list[int] = []
        self.url = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, orjson.loads(body) if body else {}))
        code = self.answers.pop(0) if self.answers else 200
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        yield


@pytest.fixture
async def http_targets() -> AsyncIterator[Callable[[], Awaitable[Target]]]:
    """``target = await http_targets()``: a local HTTP server on a free port."""
    servers: list[tuple[_Server, asyncio.Task[None]]] = []

    async def start() -> Target:
        target = Target()
        server = _Server(
            uvicorn.Config(target, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, 10)
        port = server.servers[0].sockets[0].getsockname()[1]
        target.url = f"http://127.0.0.1:{port}/customers"
        servers.append((server, task))
        return target

    yield start
    for server, task in servers:
        server.should_exit = True
        await task


@pytest.fixture
async def pg_crm(
    pg_database: Callable[[str], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[EmbeddedSystem]]]:
    """crm-sync alone on a fresh PostgreSQL database (same shape as ``crm_factory``)."""
    from fastapi import FastAPI

    from crm_sync.app import SERVICE
    from leadpact.bus.memory import MemoryBus
    from leadpact.clock import ManualClock
    from leadpact.service import create_app
    from leadpact.settings import Settings
    from tests.fixtures.system import TEST_CONTRACT

    async with contextlib.AsyncExitStack() as stack:

        async def start(**settings: object) -> EmbeddedSystem:
            for name, value in {
                "stripe_webhook_secrets": [STRIPE_SECRET],
                "webhook_secrets": [WEBHOOK_SECRET],
                **settings,
            }.items():
                text = value if isinstance(value, str) else json.dumps(value)
                monkeypatch.setenv(f"LEADPACT_CRM_SYNC_{name.upper()}", text)
            url = await pg_database("crm-sync")
            bus, clock = MemoryBus(partitions=3), ManualClock()
            stack.push_async_callback(bus.stop)
            config = Settings(
                database_url=url, contract_path=TEST_CONTRACT, relay_poll_seconds=0.05
            )
            app: FastAPI = create_app(SERVICE, config, clock=clock, bus=bus)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm")
            )
            return EmbeddedSystem({"crm-sync": app}, {"crm-sync": client}, bus, clock)

        yield start
