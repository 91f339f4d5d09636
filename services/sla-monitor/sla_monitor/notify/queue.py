"""Queueing notifications inside the transaction that causes them (assignment, at-risk,
breach): routing never waits for a channel, and a rolled-back assignment tells nobody."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from leadpact.contract import Routing
from sla_monitor.notify import store
from sla_monitor.settings import NotifySettings


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str | None = None
    email: str | None = None
    slack: str | None = None


@dataclass(frozen=True)
class Message:
    kind: str  # assigned, at_risk, breached, escalated
    lead_id: str
    subject: str
    text: str
    fields: dict[str, Any]
    round: int = 0


def member_recipient(routing: Routing | None, member_id: str) -> Recipient:
    """The contract's contact details of a member; an owner routing does not know (set by
    the CRM) is reached by e-mail when it looks like an address."""
    found = routing.member(member_id) if routing is not None else None
    if found is None:
        return Recipient(id=member_id, email=member_id if "@" in member_id else None)
    _, member = found
    return Recipient(id=member.id, name=member.name, email=member.email, slack=member.slack)


def manager_recipient(routing: Routing | None, team_id: str | None) -> Recipient | None:
    team = routing.team(team_id) if routing is not None and team_id else None
    if team is None or team.manager is None:
        return None
    m = team.manager
    return Recipient(id=f"manager:{team.id}", name=m.name, email=m.email, slack=m.slack)


class Notifier:
    """Puts one row per configured channel in the queue; the worker delivers them."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.wake = lambda: None  # set by the worker: a new row, look at the queue

    async def send(
        self, session: AsyncSession, now: datetime, message: Message, to: Recipient
    ) -> int:
        """Queue ``message`` to ``to`` on every channel that can reach them; returns rows
        queued (a message already queued under its dedup key is not queued again)."""
        return await self.send_all(session, [(now, message, to)])

    async def send_all(
        self, session: AsyncSession, messages: Sequence[tuple[datetime, Message, Recipient]]
    ) -> int:
        """:meth:`send` of several messages (each with its time), in order, in one insert
        (a consumer batch's assignments); returns rows queued."""
        rows = [row for now, message, to in messages for row in self._rows(now, message, to)]
        queued = await store.enqueue(session, rows)
        if queued:
            self.wake()
        return queued

    def _rows(self, now: datetime, message: Message, to: Recipient) -> list[dict[str, Any]]:
        """The queue rows of ``message`` to ``to``: one per channel that can reach them."""
        rows = []
        for channel in self.settings.channels():
            if channel == "email" and not to.email:
                continue
            key = f"{message.kind}:{message.lead_id}:{message.round}:{to.id}:{channel}"
            data = {
                "kind": message.kind,
                "lead_id": message.lead_id,
                "recipient": {"id": to.id, "name": to.name, "email": to.email, "slack": to.slack},
                "fields": message.fields,
            }
            rows.append(
                {
                    "dedup_key": key[:300],
                    "lead_id": message.lead_id,
                    "kind": message.kind,
                    "channel": channel,
                    "recipient": to.email if channel == "email" else to.id,
                    "subject": message.subject[:300],
                    "body": message.text,
                    "data": data,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
        return rows
