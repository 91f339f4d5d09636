"""Intake's integration fixtures: intake alone, configured through its own settings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.fixtures.system import EmbeddedSystem, SystemFactory

META_SECRET = "meta-app-secret"
TYPEFORM_SECRET = "typeform-secret"
GOOGLE_KEY = "google-form-key"

IntakeFactory = Callable[..., Awaitable[EmbeddedSystem]]


@pytest.fixture
async def intake_factory(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[IntakeFactory]:
    """``await intake_factory(graph_base_url=..., ...)`` starts intake alone with these
    ``LEADPACT_INTAKE_*`` settings on top of test defaults (platform secrets set, crm-sync
    pointed at a closed port unless given)."""

    async def start(**intake_settings: object) -> EmbeddedSystem:
        defaults: dict[str, object] = {
            "meta_app_secret": META_SECRET,
            "meta_verify_token": "verify-me",
            "meta_access_token": "page-token",
            "typeform_secret": TYPEFORM_SECRET,
            "google_key": GOOGLE_KEY,
            "crm_sync_url": "http://127.0.0.1:9",
            "graph_backoff_seconds": 0.01,
            "graph_timeout_seconds": 2,
        }
        for name, value in {**defaults, **intake_settings}.items():
            text = value if isinstance(value, str) else json.dumps(value)
            monkeypatch.setenv(f"LEADPACT_INTAKE_{name.upper()}", text)
        return await system_factory(only=["intake"])

    yield start
