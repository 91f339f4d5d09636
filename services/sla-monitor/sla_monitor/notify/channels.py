"""The delivery channels: a Slack-compatible incoming webhook (JSON with ``blocks``),
e-mail over SMTP (aiosmtplib) and a generic webhook signed with HMAC-SHA256.

Each ``send_*`` raises :class:`DeliveryError` on any failure; the worker retries later."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import orjson

from sla_monitor.notify.store import NotificationRow
from sla_monitor.settings import NotifySettings

SIGNATURE_HEADER = "X-Leadpact-Signature"
TIMESTAMP_HEADER = "X-Leadpact-Timestamp"
DELIVERY_HEADER = "X-Leadpact-Delivery"


class DeliveryError(Exception):
    """A channel did not take the message (down, refused, non-2xx)."""


def _mention(row: NotificationRow) -> str:
    recipient = row.data.get("recipient", {})
    if recipient.get("slack"):
        return f"<@{recipient['slack']}>"
    return str(recipient.get("name") or recipient.get("id") or "")


def slack_payload(row: NotificationRow) -> dict[str, Any]:
    """Slack's incoming-webhook JSON: ``text`` (the notification fallback) and ``blocks``."""
    fields = row.data.get("fields", {})
    shown = [(k, v) for k, v in fields.items() if v is not None][:10]  # Slack allows 10
    return {
        "text": f"{row.subject}: {row.body}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": row.subject[:150]}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{_mention(row)} {row.body}".strip()},
            },
            *(
                [
                    {
                        "type": "section",
                        "fields": [
                            {"type": "mrkdwn", "text": f"*{k.replace('_', ' ')}*\n{v}"}
                            for k, v in shown
                        ],
                    }
                ]
                if shown
                else []
            ),
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"leadpact · {row.kind}"}],
            },
        ],
    }


async def send_slack(client: httpx.AsyncClient, url: str, row: NotificationRow) -> None:
    try:
        answer = await client.post(url, json=slack_payload(row))
    except httpx.HTTPError as exc:
        raise DeliveryError(f"slack: {type(exc).__name__}: {exc}") from exc
    if answer.status_code // 100 != 2:
        raise DeliveryError(f"slack: HTTP {answer.status_code}: {answer.text[:200]}")


def email_message(settings: NotifySettings, row: NotificationRow) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = row.recipient or ""
    message["Subject"] = row.subject
    message["X-Leadpact-Delivery"] = row.dedup_key
    lines = [row.body, ""]
    for key, value in row.data.get("fields", {}).items():
        if value is not None:
            lines.append(f"{key.replace('_', ' ')}: {value}")
    message.set_content("\n".join(lines) + "\n")
    return message


async def send_email(settings: NotifySettings, row: NotificationRow) -> None:
    if not settings.smtp_host or not row.recipient:
        raise DeliveryError("email: no SMTP host or no recipient address")
    try:
        await aiosmtplib.send(
            email_message(settings, row),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            timeout=settings.timeout_seconds,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"email: {type(exc).__name__}: {exc}") from exc


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``: the receiver checks it
    and rejects timestamps outside its replay window."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_body(row: NotificationRow) -> bytes:
    return orjson.dumps(
        {
            "id": row.dedup_key,
            "kind": row.kind,
            "lead_id": row.lead_id,
            "subject": row.subject,
            "text": row.body,
            "recipient": row.data.get("recipient"),
            "fields": row.data.get("fields", {}),
        }
    )


async def send_webhook(
    client: httpx.AsyncClient, url: str, secret: str | None, row: NotificationRow, now: datetime
) -> None:
    body = webhook_body(row)
    timestamp = str(int(now.timestamp()))
    headers = {
        "content-type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_HEADER: row.dedup_key,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}") from exc
    if answer.status_code // 100 != 2:
        raise DeliveryError(f"webhook: HTTP {answer.status_code}: {answer.text[:200]}")
