"""Who may call what: every route of every service, read from its OpenAPI document, is in
exactly one class below, and each class is held to its rule.

- ``HEALTH``: probes, open by design (plus ``/metrics`` and the docs, outside the schema).
- ``SIGNED``: public ingestion that authenticates the sender itself (a platform's signature,
  a verify token, a shared key, an origin allow-list); see ``test_webhook_signatures``.
- ``KEYED``: routes behind an API key with a scope (intake's ``X-API-Key``): no key → 401,
  a key without the scope → 403, an unknown key → 401.
- ``WITHOUT_KEYS``: management routes of the services that have no API-key mechanism at
  all (scoring, sla-monitor, feedback, crm-sync) — the finding of the issue 9 audit (see
  notes/issue-9.md, "Security"). They answer anyone; the test keeps the list exact, so a
  route that gains a key check must move to ``KEYED`` with its scope, and a new route
  must be classified before it ships.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.fixtures.system import SystemFactory
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
}

WITHOUT_KEYS: dict[str, set[Route]] = {
    "intake": set(),
    "scoring": {
        ("GET", "/v1/scores/{lead_id}"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models"),
        ("POST", "/v1/models/{version}/promote"),
        ("POST", "/v1/models/rollback"),
        ("POST", "/v1/models/retrain"),
    },
    "sla-monitor": {
        ("GET", "/v1/leads/{lead_id}/sla"),
        ("GET", "/v1/breaches"),
        ("GET", "/v1/compliance"),
        ("GET", "/v1/teams"),
        ("GET", "/v1/teams/{team_id}"),
        ("PUT", "/v1/teams/{team_id}"),
        ("GET", "/v1/members/{member_id}"),
        ("PUT", "/v1/members/{member_id}"),
        ("GET", "/v1/teams/{team_id}/load"),
        ("GET", "/v1/leads/{lead_id}/owner"),
        ("POST", "/v1/leads/{lead_id}/owner"),
        ("GET", "/v1/notifications"),
    },
    "feedback": {
        ("POST", "/v1/activities"),
        ("GET", "/v1/rejection-reasons"),
        ("GET", "/v1/leads/{lead_id}"),
        ("GET", "/v1/kpis"),
        ("GET", "/v1/funnel"),
        ("GET", "/v1/cohorts"),
        ("POST", "/v1/spend"),
        ("GET", "/v1/spend"),
        ("POST", "/v1/spend/import"),
        ("GET", "/v1/attribution"),
        ("GET", "/v1/bonus"),
        ("POST", "/v1/crm-links"),
        ("GET", "/reports/weekly"),
        ("GET", "/v1/reviews/quarterly"),
        ("GET", "/reports/quarterly"),
    },
    "crm-sync": {
        ("GET", "/v1/customers/lookup"),
        ("GET", "/v1/customers/{customer_id}"),
        ("GET", "/v1/customers/{customer_id}/timeline"),
        ("GET", "/v1/customers/{customer_id}/offers"),
        ("GET", "/v1/customers/{customer_id}/merges"),
        ("GET", "/v1/conflicts"),
        ("GET", "/v1/reviews"),
        ("POST", "/v1/reviews/{review_id}"),
        ("POST", "/v1/merges/{merge_id}/undo"),
        ("GET", "/v1/sync"),
        ("DELETE", "/v1/subjects"),
    },
}
SERVICES = sorted(WITHOUT_KEYS)


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
    classes = [
        HEALTH,
        set(SIGNED.get(service, {})),
        set(KEYED.get(service, {})),
        WITHOUT_KEYS[service],
    ]
    known = set().union(*classes)
    assert sum(len(c) for c in classes) == len(known), "a route is in two classes"
    assert found - known == set(), f"{service}: routes nobody classified (who may call them?)"
    assert known - found == set(), f"{service}: classified routes that no longer exist"
    for path in OUTSIDE_THE_SCHEMA:  # the only routes outside the schema: probes and docs
        assert (await system[service].get(path)).status_code == 200, path


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


@pytest.mark.parametrize("service", [s for s in SERVICES if WITHOUT_KEYS[s]])
async def test_management_routes_of_services_without_keys_answer_anyone(
    service: str, system_factory: SystemFactory
) -> None:
    """The audit's finding, kept exact: these answer without any credential. When a
    service gets keys, this fails for its routes: move them to ``KEYED``."""
    system = await system_factory(only=[service])
    guarded = []
    for route in sorted(WITHOUT_KEYS[service]):
        for key in (None, "lpk_0000_made-up"):
            answer = await call(system[service], route, key)
            if answer.status_code in (401, 403):
                guarded.append((route, key, answer.status_code))
    assert guarded == [], f"now guarded: move to KEYED with their scope: {guarded}"
