"""What the channels send, without sending: Slack blocks, the webhook signature, backoff."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from sla_monitor.notify.channels import sign, slack_payload, webhook_body
from sla_monitor.notify.store import NotificationRow
from sla_monitor.notify.worker import backoff
from sla_monitor.settings import NotifySettings


def row(**data: object) -> NotificationRow:
    return NotificationRow(
        dedup_key="assigned:L1:0:lucia:slack",
        lead_id="L1",
        kind="assigned",
        channel="slack",
        recipient="lucia",
        subject="New lead for you: L1",
        body="New MQL L1 is yours.",
        data={
            "recipient": {"id": "lucia", "slack": "U1"},
            "fields": {"lead_id": "L1", "team": "smb", "rule": None, **data},
        },
    )


def test_slack_payload_is_text_plus_blocks() -> None:
    payload = slack_payload(row())
    assert payload["text"] == "New lead for you: L1: New MQL L1 is yours."
    header, section, fields, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New lead for you: L1"},
    }
    assert section["text"] == {"type": "mrkdwn", "text": "<@U1> New MQL L1 is yours."}
    assert [f["text"] for f in fields["fields"]] == ["*lead id*\nL1", "*team*\nsmb"]  # no nulls
    assert context["type"] == "context"


def test_slack_allows_at_most_ten_fields() -> None:
    many = {f"k{i}": i for i in range(15)}
    assert len(slack_payload(row(**many))["blocks"][2]["fields"]) == 10


def test_signature_is_hmac_of_timestamp_and_body() -> None:
    body = webhook_body(row())
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == "sha256=" + expected


def test_backoff_doubles_and_is_capped() -> None:
    settings = NotifySettings(backoff_seconds=30, backoff_max_seconds=200)
    assert [backoff(settings, n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=200),
    ]
