"""No secret in logs: each service runs as its own process (``python -m <package>``, JSON
structlog at DEBUG, everything it writes captured) with known secret values — its webhook
secrets, tokens, an API key, and a password in its database URL — and is driven through
the requests that use them, right and wrong, and through the error paths where a secret
would be quoted: its database cut for a moment (through a TCP proxy the test owns), the
Graph API down for intake, the CRM unreachable for crm-sync's pushes. None of the secret
strings may appear in its output."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url
from starlette.requests import Request
from typer.testing import CliRunner

from crm_sync.signatures import signature_header
from feedback.domain.webhooks import generic_signature, hubspot_v3_signature
from intake.cli import app as intake_cli
from intake.domain.signatures import meta_signature, typeform_signature
from tests.fixtures.distributed import ServiceProcess, free_port
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.system import TEST_CONTRACT
from tests.fixtures.waiting import eventually
from tests.integration.crm_sync.conftest import stripe_customer
from tests.integration.intake.stubs import HttpStub, http_stub
from tests.integration.intake.test_api import LEAD
from tests.integration.intake.test_platforms import (
    GOOGLE_LEAD,
    GRAPH_LEAD,
    META_NOTIFICATION,
    TYPEFORM_EVENT,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def secret(name: str) -> str:
    """A value that cannot occur in a log by chance."""
    return f"{name}-{uuid.uuid4().hex}"


@dataclass
class Running:
    client: httpx.AsyncClient
    secrets: dict[str, str]  # environment variable → its secret value
    database_url: str  # with the password
    graph: HttpStub


Drive = Callable[[Running], Awaitable[None]]


def now() -> int:
    return int(time.time())


async def drive_intake(run: Running) -> None:
    s, c = run.secrets, run.client
    # An API key made by the CLI on the service's database (it prints the key once).
    key = (
        await asyncio.to_thread(
            CliRunner().invoke,
            intake_cli,
            ["keys", "create", "--source", "crm"],
            env={"LEADPACT_DATABASE_URL": run.database_url},
        )
    ).output.strip()
    assert key.startswith("lpk_"), key
    s["the API key"] = key
    assert (await c.post("/v1/leads", json=LEAD)).status_code == 401
    assert (await c.post("/v1/leads", json=LEAD, headers={"X-API-Key": key})).is_success
    wrong_key = key[:-4] + "xxxx"  # the right id, a wrong secret: the hash comparison fails
    assert (
        await c.post("/v1/leads", json=LEAD, headers={"X-API-Key": wrong_key})
    ).status_code == 401

    verify = {"hub.mode": "subscribe", "hub.challenge": "42"}
    token = s["LEADPACT_INTAKE_META_VERIFY_TOKEN"]
    ok = await c.get("/v1/platforms/meta/webhook", params={**verify, "hub.verify_token": token})
    assert ok.status_code == 200
    bad = await c.get("/v1/platforms/meta/webhook", params={**verify, "hub.verify_token": "no"})
    assert bad.status_code == 403

    body = orjson.dumps(META_NOTIFICATION)
    meta_secret = s["LEADPACT_INTAKE_META_APP_SECRET"]
    json_type = {"Content-Type": "application/json"}
    run.graph.down = True  # the fetch fails first: the error path logs
    signed = {**json_type, "X-Hub-Signature-256": meta_signature(meta_secret, body)}
    assert (await c.post("/v1/platforms/meta/webhook", content=body, headers=signed)).is_success
    forged = {**json_type, "X-Hub-Signature-256": meta_signature("wrong", body)}
    meta_bad = await c.post("/v1/platforms/meta/webhook", content=body, headers=forged)
    assert meta_bad.status_code == 401
    await eventually(lambda: len(run.graph.requests) >= 1)  # the failed fetch, token and all
    run.graph.down = False

    body = orjson.dumps(TYPEFORM_EVENT)
    typeform_secret = s["LEADPACT_INTAKE_TYPEFORM_SECRET"]
    for sign_with, status in ((typeform_secret, 200), ("wrong", 401)):
        headers = {**json_type, "Typeform-Signature": typeform_signature(sign_with, body)}
        answer = await c.post("/v1/platforms/typeform/webhook", content=body, headers=headers)
        assert answer.status_code == status, answer.text

    google_key = s["LEADPACT_INTAKE_GOOGLE_KEY"]
    for key_sent, status in ((google_key, 200), ("wrong", 401)):
        lead = {**GOOGLE_LEAD, "google_key": key_sent, "lead_id": uuid.uuid4().hex}
        answer = await c.post("/v1/platforms/google-ads/leads", json=lead)
        assert answer.status_code == status, answer.text


async def drive_feedback(run: Running) -> None:
    s, c = run.secrets, run.client
    body = orjson.dumps({"events": [{"lead_id": "lead-1", "status": "accepted"}]})
    for sign_with in (s["LEADPACT_FEEDBACK_WEBHOOK_SECRET"], "wrong"):
        ts = str(now())
        headers = {
            "Content-Type": "application/json",
            "X-Leadpact-Signature": generic_signature(sign_with, ts, body),
            "X-Leadpact-Timestamp": ts,
        }
        await c.post("/v1/webhooks/generic", content=body, headers=headers)
    events = orjson.dumps([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 5}])
    url = f"{c.base_url}v1/webhooks/hubspot"
    for sign_with in (s["LEADPACT_FEEDBACK_HUBSPOT_CLIENT_SECRET"], "wrong"):
        ms = str(now() * 1000)
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": hubspot_v3_signature(sign_with, "POST", url, events, ms),
            "X-HubSpot-Request-Timestamp": ms,
        }
        await c.post("/v1/webhooks/hubspot", content=events, headers=headers)


async def drive_crm_sync(run: Running) -> None:
    s, c = run.secrets, run.client
    body = orjson.dumps(stripe_customer("evt_1"))
    for sign_with, status in ((s["stripe secret"], 200), ("whsec_wrong", 401)):
        headers = {"Stripe-Signature": signature_header(sign_with, now(), body)}
        answer = await c.post("/v1/webhooks/stripe", content=body, headers=headers)
        assert answer.status_code == status, answer.text
    contact = orjson.dumps(
        {
            "id": "c-1",
            "type": "customer.upserted",
            "occurred_at": "2026-11-02T09:00:00Z",
            "customer": {"external_id": "42", "email": "ana.garcia@acme.example"},
        }
    )
    for sign_with, status in ((s["webhook secret"], 200), ("wrong", 401)):
        headers = {"Webhook-Signature": signature_header(sign_with, now(), contact)}
        answer = await c.post("/v1/webhooks/crm", content=contact, headers=headers)
        assert answer.status_code == status, answer.text
    await asyncio.sleep(1)  # the push to the (unreachable) CRM, with its bearer token, fails


async def drive_nothing_more(run: Running) -> None:
    """scoring and sla-monitor hold no secret but their database password."""
    assert (await run.client.get("/readyz")).status_code == 200


@dataclass(frozen=True)
class Case:
    settings: Callable[[], dict[str, str]]  # secret settings, made fresh for each run
    drive: Drive


def _intake() -> dict[str, str]:
    return {
        "LEADPACT_INTAKE_META_APP_SECRET": secret("meta-app"),
        "LEADPACT_INTAKE_META_VERIFY_TOKEN": secret("meta-verify"),
        "LEADPACT_INTAKE_META_ACCESS_TOKEN": secret("meta-access"),
        "LEADPACT_INTAKE_TYPEFORM_SECRET": secret("typeform"),
        "LEADPACT_INTAKE_GOOGLE_KEY": secret("google"),
        "LEADPACT_INTAKE_CRM_SYNC_API_KEY": secret("crm-sync-key"),  # sent on failing checks
        "LEADPACT_INTAKE_REQUIRE_API_KEY": "true",
        "LEADPACT_INTAKE_GRAPH_RETRIES": "1",  # one refused fetch is logged as postponed
    }


def _feedback() -> dict[str, str]:
    return {
        "LEADPACT_FEEDBACK_HUBSPOT_CLIENT_SECRET": secret("hubspot"),
        "LEADPACT_FEEDBACK_WEBHOOK_SECRET": secret("generic"),
    }


def _crm_sync() -> dict[str, str]:
    return {
        "stripe secret": secret("whsec"),
        "webhook secret": secret("crm-webhook"),
        "LEADPACT_CRM_SYNC_PUSH_TOKEN": secret("push-token"),
        "LEADPACT_CRM_SYNC_CRM_PUSH_URL": "http://127.0.0.1:9/crm",
    }


CASES = {
    "intake": Case(_intake, drive_intake),
    "feedback": Case(_feedback, drive_feedback),
    "crm-sync": Case(_crm_sync, drive_crm_sync),
    "scoring": Case(dict, drive_nothing_more),
    "sla-monitor": Case(dict, drive_nothing_more),
}
NOT_SECRET = {
    "LEADPACT_INTAKE_REQUIRE_API_KEY",
    "LEADPACT_INTAKE_GRAPH_RETRIES",
    "LEADPACT_CRM_SYNC_CRM_PUSH_URL",
}


def graph_lead(_: Request) -> tuple[int, object]:
    return 200, GRAPH_LEAD


async def database_outage(client: httpx.AsyncClient, proxy: TcpProxy) -> None:
    """The database unreachable for a moment: readiness, the outbox relay and the
    consumers fail and log why; then it is back."""
    proxy.cut()
    try:
        assert (await client.get("/readyz")).status_code == 503
        await asyncio.sleep(1.5)  # several relay polls fail meanwhile
    finally:
        proxy.restore()

    async def ready() -> bool:
        return (await client.get("/readyz")).status_code == 200

    await eventually(ready, 30)


@pytest.mark.parametrize("service", sorted(CASES))
async def test_no_secret_reaches_the_logs(
    service: str,
    pg_database: Callable[[str], Awaitable[str]],
    tcp_proxy: Callable[[str, int], TcpProxy],
    tmp_path: Path,
) -> None:
    case = CASES[service]
    secrets = case.settings()
    password = secret("db-password")  # PostgreSQL here trusts 127.0.0.1: any password works
    direct = make_url(await pg_database(service)).set(password=password)
    proxy = tcp_proxy(direct.host or "127.0.0.1", direct.port or 5432)
    database_url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False
    )
    env = {name: value for name, value in secrets.items() if name.startswith("LEADPACT_")}
    if service == "crm-sync":  # lists, as its settings take them
        env["LEADPACT_CRM_SYNC_STRIPE_WEBHOOK_SECRETS"] = f'["{secrets["stripe secret"]}"]'
        env["LEADPACT_CRM_SYNC_WEBHOOK_SECRETS"] = f'["{secrets["webhook secret"]}"]'
    async with http_stub(graph_lead) as graph:
        port = free_port()
        process = ServiceProcess(
            service,
            port,
            {
                **os.environ,
                "LEADPACT_BUS_URL": "memory://",
                "LEADPACT_DATABASE_URL": database_url,
                "LEADPACT_CONTRACT_PATH": str(TEST_CONTRACT),
                "LEADPACT_PORT": str(port),
                "LEADPACT_LOG_LEVEL": "DEBUG",
                "LEADPACT_LOG_JSON": "true",
                "LEADPACT_CRM_SYNC_URL": "http://127.0.0.1:9",
                "LEADPACT_INTAKE_CRM_SYNC_URL": "http://127.0.0.1:9",
                "LEADPACT_INTAKE_GRAPH_BASE_URL": graph.url,
                **env,
            },
            tmp_path / f"{service}.log",
        )
        process.start()
        try:
            await process.wait_ready()

            async with httpx.AsyncClient(base_url=process.url, timeout=10) as client:
                running = Running(client, secrets, database_url, graph)
                await case.drive(running)
                await database_outage(client, proxy)
        finally:
            process.stop()
    written = process.log.read_text()
    # The error paths did log (else nothing was checked): the relay's failures at least.
    assert '"level": "warning"' in written, f"no warning logged:\n{written[-2000:]}"
    secrets = {n: v for n, v in running.secrets.items() if n not in NOT_SECRET}
    leaked = {
        name
        for name, value in {**secrets, "database password": password}.items()
        if value in written
    }
    assert not leaked, f"{service} logged {sorted(leaked)}:\n{written[-4000:]}"
