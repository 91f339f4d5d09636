"""What schemathesis found in feedback (issue 9), pinned down: on PostgreSQL, which cannot
store a NUL character, a NUL in any text field or path, or a CSV that is not CSV, must be
refused with a 422 naming where — never a 500 from the database or the csv module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from leadpact.embedded import load_services
from leadpact.service import create_app
from leadpact.settings import Settings
from tests.fixtures.system import TEST_CONTRACT

pytestmark = [pytest.mark.postgres]

CSV = {"Content-Type": "text/csv"}
HOSTILE: list[tuple[str, str, dict[str, Any], list[Any]]] = [
    (
        "POST",
        "/v1/activities",
        {"json": {"type": "accepted", "lead_id": "a\x00b"}},
        ["body", "accepted", "lead_id"],
    ),
    (
        "POST",
        "/v1/activities",
        {"json": {"type": "rejected", "lead_id": "l-1", "reason": "x", "note": "\x00"}},
        ["body", "rejected", "note"],
    ),
    (
        "POST",
        "/v1/crm-links",
        {"json": {"crm": "hubspot", "object_id": "1", "lead_id": "a\x00b"}},
        ["body", "lead_id"],
    ),
    (
        "POST",
        "/v1/spend",
        {"json": {"items": [{"day": "2026-01-01", "amount": "1", "source": "a\x00"}]}},
        ["body", "items", 0, "source"],
    ),
    (
        "POST",
        "/v1/spend/import",
        {"content": b"day,amount,source\n2026-01-01,1,a\x00b\n", "headers": CSV},
        ["body", "line 2", "source"],
    ),
    (
        "POST",
        "/v1/spend/import",
        {"content": b'\xc2\x99\x06\x1a\r"TB0', "headers": CSV},  # found by schemathesis
        ["body", "line 1", "file"],
    ),
    ("GET", "/v1/leads/a%00b", {}, ["path", "lead_id"]),
]


@pytest.mark.parametrize(("method", "path", "request_", "where"), HOSTILE)
async def test_hostile_input_is_a_422_naming_where(
    method: str,
    path: str,
    request_: dict[str, Any],
    where: list[Any],
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    settings = Settings(
        database_url=await pg_database("feedback"),
        bus_url="memory://",
        contract_path=TEST_CONTRACT,
        log_json=False,
    )
    app = create_app(load_services()["feedback"], settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fb") as client,
    ):
        answer = await client.request(method, path, **request_)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == where
