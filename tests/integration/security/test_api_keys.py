"""Who may call what: every route of every service, read from its OpenAPI document, is in
exactly one class below, and each class is held to its rule.

- ``HEALTH``: probes, open by design (plus ``/metrics`` and the docs, outside the schema).
- ``SIGNED``: public ingestion that authenticates the sender itself (a platform's signature,
  a verify token, a shared key, an origin allow-list); see ``test_webhook_signatures``.
- ``KEYED``: routes behind an API key with a scope (``X-API-Key``): no key → 401, an
  unknown key → 401, a key without the scope → 403. Intake's keys are its own (per source,
  in its database, ``intake keys create``); the four other services share
  ``leadpact.apikeys`` (keys in ``LEADPACT_API_KEYS``, ``leadpact keys new``).

There is no fourth class: a new route must be classified before it ships, and a management
route cannot be left open (the issue 9 audit found 44 such routes; see notes/issue-9.md,
"Security").
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from leadpact.apikeys import new_key
from leadpact.cli import app as leadpact_cli
from leadpact.settings import ApiKeyEntry
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.intake.test_api import LEAD, cli_run

Route = tuple[str, str]  # (method, path as in the OpenAPI document)

HEALTH: set[Route] = {("GET", "/healthz"), ("GET", "/readyz")}
OUTSIDE_THE_SCHEMA = ["/metrics", "/openapi.json", "/docs", "/redoc"]

SIGNED: dict[str, dict[Route, str]] = {
    "intake": {
        ("GET", "/v1/platforms/meta/webhook"): "hub.verify_token",
        ("POST", "/v1/platforms/meta/webhook"): "X-Hub-Signature-256",
        ("POST", "/v1/platforms/google-ads/leads"): "google_key in the body",
        ("POST", "/v1/platforms/typeform/webhook"): "Typeform-Signature",
        # A browser posts it: no secret can live in a web page. Origin allow-list + honeypot.
        ("POST", "/v1/platforms/website/forms"): "Origin allow-list",
    },
    "feedback": {
        ("POST", "/v1/webhooks/hubspot"): "X-HubSpot-Signature-v3",
        ("POST", "/v1/webhooks/generic"): "X-Leadpact-Signature",
    },
    "crm-sync": {
        ("POST", "/v1/webhooks/stripe"): "Stripe-Signature",
        ("POST", "/v1/webhooks/crm"): "Webhook-Signature",
        ("POST", "/v1/webhooks/billing"): "Webhook-Signature",
    },
}

KEYED: dict[str, dict[Route, str]] = {
    "intake": {("POST", "/v1/leads"): "leads:write", ("GET", "/v1/leads/{lead_id}"): "leads:read"},
    "scoring": {
        ("GET", "/v1/scores/{lead_id}"): "scores:read",
        ("GET", "/v1/models"): "models:read",
        ("POST", "/v1/models"): "models:admin",
        ("POST", "/v1/models/{version}/promote"): "models:admin",
        ("POST", "/v1/models/rollback"): "models:admin",
        ("POST", "/v1/models/retrain"): "models:admin",
    },
    "sla-monitor": {
        ("GET", "/v1/leads/{lead_id}/sla"): "sla:read",
        ("GET", "/v1/breaches"): "sla:read",
        ("GET", "/v1/compliance"): "sla:read",
        ("GET", "/v1/teams"): "routing:read",
        ("GET", "/v1/teams/{team_id}"): "routing:read",
        ("PUT", "/v1/teams/{team_id}"): "routing:write",
        ("GET", "/v1/members/{member_id}"): "routing:read",
        ("PUT", "/v1/members/{member_id}"): "routing:write",
        ("GET", "/v1/teams/{team_id}/load"): "routing:read",
        ("GET", "/v1/leads/{lead_id}/owner"): "routing:read",
        ("POST", "/v1/leads/{lead_id}/owner"): "routing:write",
        ("GET", "/v1/notifications"): "notifications:read",
    },
    "feedback": {
        ("POST", "/v1/activities"): "activities:write",
        ("GET", "/v1/rejection-reasons"): "activities:read",
        ("GET", "/v1/leads/{lead_id}"): "activities:read",
        ("POST", "/v1/crm-links"): "activities:write",
        ("GET", "/v1/kpis"): "funnel:read",
        ("GET", "/v1/funnel"): "funnel:read",
        ("GET", "/v1/cohorts"): "funnel:read",
        ("GET", "/v1/attribution"): "funnel:read",
        ("GET", "/v1/bonus"): "funnel:read",
        ("GET", "/reports/weekly"): "funnel:read",
        ("GET", "/v1/reviews/quarterly"): "funnel:read",
        ("GET", "/reports/quarterly"): "funnel:read",
        ("POST", "/v1/spend"): "spend:write",
        ("POST", "/v1/spend/import"): "spend:write",
        ("GET", "/v1/spend"): "spend:read",
    },
    "crm-sync": {
        ("GET", "/v1/customers/lookup"): "customers:read",
        ("POST", "/v1/customers/lookups"): "customers:read",
        ("GET", "/v1/customers/{customer_id}"): "customers:read",
        ("GET", "/v1/customers/{customer_id}/timeline"): "customers:read",
        ("GET", "/v1/customers/{customer_id}/offers"): "customers:read",
        ("GET", "/v1/customers/{customer_id}/merges"): "customers:read",
        ("GET", "/v1/conflicts"): "customers:read",
        ("GET", "/v1/reviews"): "customers:read",
        ("GET", "/v1/sync"): "customers:read",
        ("POST", "/v1/reviews/{review_id}"): "customers:write",
        ("POST", "/v1/merges/{merge_id}/undo"): "customers:write",
        ("DELETE", "/v1/subjects"): "privacy:erase",
    },
}
SERVICES = sorted(KEYED)
SHARED_KEYS = [s for s in SERVICES if s != "intake"]  # keys by settings (leadpact.apikeys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leadpact_keys_new(name: str, *scopes: str) -> tuple[str, ApiKeyEntry]:
    """A key as an operator makes it: ``leadpact keys new``, its two printed lines."""
    args = ["keys", "new", "--name", name, *(a for s in scopes for a in ("--scope", s))]
    result = CliRunner().invoke(leadpact_cli, args)
    assert result.exit_code == 0, result.output
    key_line, entry_line = result.output.strip().splitlines()
    secret = key_line.rsplit(" ", 1)[1]
    entry = ApiKeyEntry.model_validate_json(entry_line.split(": ", 1)[1])
    assert (entry.name, entry.scopes) == (name, sorted(scopes))
    return secret, entry


def operations(spec: dict[str, object]) -> set[Route]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def concrete(path: str) -> str:
    """A callable URL for a templated path (ids that exist nowhere: the answer's status,
    not its content, is what is checked)."""
    return re.sub(r"\{[^}]+\}", "not-an-id", path)


async def call(client: httpx.AsyncClient, route: Route, key: str | None) -> httpx.Response:
    method, path = route
    headers = {"X-API-Key": key} if key else {}
    body: dict[str, object] | None = {} if method in ("POST", "PUT") else None
    return await client.request(method, concrete(path), headers=headers, json=body)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_is_classified(service: str, system_factory: SystemFactory) -> None:
    system = await system_factory(only=[service])
    spec = (await system[service].get("/openapi.json")).json()
    found = operations(spec)
    classes = [HEALTH, set(SIGNED.get(service, {})), set(KEYED[service])]
    known = set().union(*classes)
    assert sum(len(c) for c in classes) == len(known), "a route is in two classes"
    assert found - known == set(), f"{service}: routes nobody classified (who may call them?)"
    assert known - found == set(), f"{service}: classified routes that no longer exist"
    for path in OUTSIDE_THE_SCHEMA:  # the only routes outside the schema: probes and docs
        assert (await system[service].get(path)).status_code == 200, path
    for method, path in KEYED[service]:  # clients learn of the key from the document
        parameters = spec["paths"][path][method.lower()].get("parameters", [])
        headers = {p["name"].lower() for p in parameters if p["in"] == "header"}
        assert "x-api-key" in headers, (method, path)


async def test_keyed_routes_need_a_key_with_their_scope(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEADPACT_INTAKE_REQUIRE_API_KEY", "true")
    monkeypatch.setenv("LEADPACT_INTAKE_CRM_SYNC_URL", "http://127.0.0.1:9")
    system = await system_factory(only=["intake"])
    intake = system["intake"]
    keys = {  # one key per source: a writing CRM and a reading BI tool
        scope: (
            await cli_run(tmp_path, "keys", "create", "--source", source, "--scope", scope)
        ).output.strip()
        for scope, source in (("leads:write", "crm"), ("leads:read", "bi"))
    }
    lead_id = (
        await intake.post("/v1/leads", json=LEAD, headers={"X-API-Key": keys["leads:write"]})
    ).json()["lead_id"]
    for route, scope in KEYED["intake"].items():
        method, path = route
        url = path.replace("{lead_id}", lead_id)
        body = LEAD if method == "POST" else None
        wrong = next(k for s, k in keys.items() if s != scope)
        for key, expected in [(None, 401), ("lpk_0000_unknown", 401), (wrong, 403)]:
            headers = {"X-API-Key": key} if key else {}
            answer = await intake.request(method, url, headers=headers, json=body)
            assert answer.status_code == expected, (route, key, answer.text)
        right = await intake.request(method, url, headers={"X-API-Key": keys[scope]}, json=body)
        assert right.is_success, (route, right.text)


@pytest.mark.parametrize("service", SHARED_KEYS)
async def test_management_routes_need_a_key_with_their_scope(
    service: str, system_factory: SystemFactory
) -> None:
    """Each route, with ``require_api_key`` on: no key and an unknown key → 401; a key with
    every scope of the service but the route's own → 403 naming it; the route's scope alone
    → through (any answer but 401/403). A route that loses its dependency fails here."""
    scopes = sorted(set(KEYED[service].values()))
    secrets: dict[str, str] = {}  # "only:<scope>" / "all-but:<scope>" → key
    entries: list[ApiKeyEntry] = []
    for scope in scopes:
        for label, held in (("only", [scope]), ("all-but", [s for s in scopes if s != scope])):
            secret, entry = new_key(f"{label}:{scope}", held or ["nothing:read"])
            secrets[entry.name] = secret
            entries.append(entry)
    system = await system_factory(only=[service], require_api_key=True, api_keys=entries)
    client = system[service]
    for route, scope in sorted(KEYED[service].items()):
        for key, expected in [
            (None, 401),
            ("lpk_made-up", 401),
            (secrets[f"all-but:{scope}"], 403),
        ]:
            answer = await call(client, route, key)
            assert answer.status_code == expected, (route, key and key[:8], answer.text)
            if expected == 403:
                assert scope in answer.json()["detail"], (route, answer.text)
        right = await call(client, route, secrets[f"only:{scope}"])
        assert right.status_code not in (401, 403), (route, right.text)


@pytest.mark.parametrize("service", SHARED_KEYS)
async def test_without_require_api_key_an_anonymous_caller_may_do_anything(
    service: str, system_factory: SystemFactory
) -> None:
    """``make run`` and the services' own tests: keys off, no key needed; a key that is
    sent is still checked (a wrong one is never silently accepted)."""
    system = await system_factory(only=[service])
    for route in sorted(KEYED[service]):
        answer = await call(system[service], route, None)
        assert answer.status_code not in (401, 403), (route, answer.text)
    route = min(KEYED[service])
    assert (await call(system[service], route, "lpk_made-up")).status_code == 401


@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "without-key"])
async def test_intake_asks_crm_sync_with_its_key(
    with_key: bool, system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one call between services: intake's customer check against the real crm-sync,
    served over TCP with keys required. Without intake's key the check cannot be answered
    (existing_customer stays unknown); with a customers:read key it is."""
    secret, entry = leadpact_keys_new("intake", "customers:read")
    port = free_port()
    monkeypatch.setenv("LEADPACT_INTAKE_CRM_SYNC_URL", f"http://127.0.0.1:{port}")
    if with_key:
        monkeypatch.setenv("LEADPACT_INTAKE_CRM_SYNC_API_KEY", secret)
    system = await system_factory(
        only=["intake", "crm-sync"], require_api_key=True, api_keys=[entry]
    )
    # The app already runs (its lifespan is the fixture's): this only serves it over TCP.
    server = uvicorn.Server(
        uvicorn.Config(
            system.apps["crm-sync"],
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        answer = await system["intake"].post("/v1/leads", json={"email": "new@startup.example"})
        assert answer.status_code == 202, answer.text
        created = (await eventually(lambda: system.events("lead.created")))[0].data
        assert created.existing_customer is (False if with_key else None)
    finally:
        server.should_exit = True
        await task
