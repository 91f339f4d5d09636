"""Telling the owner: on assignment the member gets a Slack-format message, an e-mail and a
signed webhook, delivered by the worker from the database queue to real local servers;
a channel that is down is retried with backoff and never holds up routing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.sla_monitor.local_servers import (
    HttpServer,
    SmtpServer,
    free_port,
    http_server,
    smtp_server,
)
from tests.integration.sla_monitor.test_routing import ROUTING_CONTRACT, new_mql, owner_of

SERVICE = "sla-monitor"
SECRET = "s3cret"


@dataclass
class Channels:
    system: EmbeddedSystem
    http: HttpServer
    smtp: SmtpServer


def configure(monkeypatch: pytest.MonkeyPatch, http: HttpServer, smtp_port: int) -> None:
    monkeypatch.setenv("LEADPACT_NOTIFY_SLACK_WEBHOOK_URL", http.url("/slack"))
    monkeypatch.setenv("LEADPACT_NOTIFY_WEBHOOK_URL", http.url("/hook"))
    monkeypatch.setenv("LEADPACT_NOTIFY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LEADPACT_NOTIFY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LEADPACT_NOTIFY_SMTP_PORT", str(smtp_port))
    monkeypatch.setenv("LEADPACT_NOTIFY_SMTP_FROM", "leadpact@example.com")
    monkeypatch.setenv("LEADPACT_NOTIFY_POLL_SECONDS", "0.05")
    monkeypatch.setenv("LEADPACT_NOTIFY_BACKOFF_SECONDS", "30")
    monkeypatch.setenv("LEADPACT_NOTIFY_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("LEADPACT_NOTIFY_TIMEOUT_SECONDS", "2")


@pytest.fixture
async def channels(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Channels]:
    async with http_server() as http, smtp_server() as smtp:
        configure(monkeypatch, http, smtp.port)
        system = await system_factory(only=[SERVICE], contract=ROUTING_CONTRACT)
        yield Channels(system, http, smtp)


async def notifications(system: EmbeddedSystem, lead_id: str) -> list[dict[str, Any]]:
    answer = await system[SERVICE].get("/v1/notifications", params={"lead": lead_id})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["notifications"]
    return found


async def all_sent(system: EmbeddedSystem, lead_id: str, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        rows = await notifications(system, lead_id)
        sent = [r for r in rows if r["status"] == "sent"]
        return rows if len(sent) >= count else None

    found: list[dict[str, Any]] = await eventually(probe)  # type: ignore[arg-type]
    return found


async def test_owner_gets_slack_email_and_signed_webhook(channels: Channels) -> None:
    system, http, smtp = channels.system, channels.http, channels.smtp
    lead_id = await new_mql(system, probability=0.95)
    assert (await owner_of(system, lead_id))["owner"] == "lucia"
    rows = await all_sent(system, lead_id, 3)
    assert sorted((r["channel"], r["recipient"], r["kind"]) for r in rows) == [
        ("email", "lucia@example.com", "assigned"),
        ("slack", "lucia", "assigned"),
        ("webhook", "lucia", "assigned"),
    ]
    # Slack: the documented incoming-webhook JSON, blocks mentioning the owner.
    (slack,) = http.to("/slack")
    payload = json.loads(slack.body)
    assert lead_id in payload["text"]
    types = [b["type"] for b in payload["blocks"]]
    assert types[0] == "header" and "section" in types and types[-1] == "context"
    assert payload["blocks"][1]["text"]["type"] == "mrkdwn"
    assert payload["blocks"][1]["text"]["text"].startswith("<@ULUCIA>")
    # E-mail, received by a real SMTP server.
    (mail,) = smtp.messages
    assert mail["To"] == "lucia@example.com"
    assert mail["From"] == "leadpact@example.com"
    assert lead_id in mail["Subject"]
    assert "enterprise" in mail.get_payload()
    # Generic webhook: HMAC-SHA256 over "<timestamp>.<body>".
    (hook,) = http.to("/hook")
    stamp = hook.headers["x-leadpact-timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + hook.body, hashlib.sha256)
    assert hook.headers["x-leadpact-signature"] == "sha256=" + expected.hexdigest()
    assert json.loads(hook.body)["lead_id"] == lead_id
    # Scored again: the dedup key keeps the queue at one message per channel.
    from tests.integration.sla_monitor.test_routing import VERSION, scored

    await system.publish(scored(system, lead_id, 0.95), VERSION)
    marker = await new_mql(system, probability=0.95)
    await all_sent(system, marker, 3)
    assert len(await notifications(system, lead_id)) == 3
    assert len(http.to("/slack")) == 2  # the lead and the marker, once each


async def test_failed_delivery_is_retried_with_backoff(channels: Channels) -> None:
    system, http = channels.system, channels.http
    http.statuses = [500, 503]  # the first two requests fail (slack and webhook, any order)
    lead_id = await new_mql(system, probability=0.95)

    async def retried() -> list[dict[str, Any]] | None:
        rows = await notifications(system, lead_id)
        pending = [r for r in rows if r["status"] == "pending" and r["attempts"] == 1]
        return rows if len(pending) == 2 else None

    rows = await eventually(retried)
    assert rows is not None
    for row in rows:
        if row["status"] == "pending":
            assert "HTTP 50" in row["last_error"]
            assert row["next_attempt_at"] == "2026-11-02T09:00:30Z"  # first backoff: 30 s
    system.clock.advance(timedelta(seconds=30))
    final = await all_sent(system, lead_id, 3)
    assert {r["attempts"] for r in final if r["channel"] != "email"} == {2}
    assert len(http.requests) == 4


async def test_a_channel_that_is_down_never_blocks_routing(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with http_server() as http:
        configure(monkeypatch, http, free_port())  # nobody listens on the SMTP port
        system = await system_factory(only=[SERVICE], contract=ROUTING_CONTRACT)
        lead_id = await new_mql(system, probability=0.95)
        owner = await owner_of(system, lead_id)  # assigned and armed all the same
        assert owner["owner"] == "lucia"
        assert owner["deadlines"][0]["owner"] == "lucia"

        async def email_failed_once() -> dict[str, Any] | None:
            rows = await notifications(system, lead_id)
            email = next(r for r in rows if r["channel"] == "email")
            return email if email["attempts"] >= 1 else None

        email: dict[str, Any] = await eventually(email_failed_once)  # type: ignore[arg-type]
        assert email["status"] == "pending"
        assert email["last_error"].startswith("email:")
        for _ in range(2):  # 30 s, then 60 s: the third failure gives up
            system.clock.advance(timedelta(minutes=2))

            async def attempted(n: int = _ + 2) -> bool:
                rows = await notifications(system, lead_id)
                return next(r for r in rows if r["channel"] == "email")["attempts"] >= n

            await eventually(attempted)
        rows = await notifications(system, lead_id)
        assert {r["channel"]: r["status"] for r in rows} == {
            "email": "failed",
            "slack": "sent",
            "webhook": "sent",
        }
        failed = await system[SERVICE].get("/v1/notifications", params={"status": "failed"})
        assert [r["channel"] for r in failed.json()["notifications"]] == ["email"]
        bad = await system[SERVICE].get("/v1/notifications", params={"status": "lost"})
        assert bad.status_code == 422 and "status" in bad.text
