"""Escalation as the contract says (``routing.escalation``), inside the transaction that
warns or breaches: remind the owner at ``sla.at_risk``; at ``sla.breached`` tell the owner
and the team manager and, with ``reassign``, hand the lead to the next available member of
the team with a fresh first-contact deadline. The breach stays on record against the
first owner (its row keeps that owner; the new deadline is the next ``round``)."""

from __future__ import annotations

from datetime import datetime

from leadpact.contract import ContractBook, Routing
from leadpact.messaging import UnitOfWork
from sla_monitor import store as deadlines
from sla_monitor.domain import first_contact_deadline
from sla_monitor.notify.queue import (
    Message,
    Notifier,
    Recipient,
    manager_recipient,
    member_recipient,
)
from sla_monitor.routing import assign, store
from sla_monitor.routing.metrics import RoutingMetrics


def _minutes(seconds: float) -> str:
    return f"{max(0, round(seconds / 60))} min"


class Escalator:
    def __init__(
        self, contracts: ContractBook, notifier: Notifier, metrics: RoutingMetrics
    ) -> None:
        self._contracts = contracts
        self._notifier = notifier
        self._metrics = metrics

    async def at_risk(self, uow: UnitOfWork, row: deadlines.DeadlineRow, now: datetime) -> None:
        routing = self._contracts.get(row.contract_version).routing
        if routing is None or row.owner is None or not routing.escalation.remind_at_risk:
            return
        left = (row.due_at - now).total_seconds()
        await self._notifier.send(
            uow.session,
            now,
            Message(
                f"at_risk.{row.clause}",
                row.lead_id,
                f"Reminder: {row.clause.replace('_', ' ')} due in {_minutes(left)}",
                f"Lead {row.lead_id}: the {row.clause.replace('_', ' ')} deadline is at "
                f"{row.due_at.isoformat()} ({_minutes(left)} left).",
                {
                    "lead_id": row.lead_id,
                    "clause": row.clause,
                    "deadline": row.due_at.isoformat(),
                    "owner": row.owner,
                },
                row.round,
            ),
            member_recipient(routing, row.owner),
        )

    async def _capped(
        self,
        uow: UnitOfWork,
        routing: Routing,
        current: store.AssignmentRow,
        row: deadlines.DeadlineRow,
        now: datetime,
        manager: Recipient | None,
    ) -> None:
        if manager is None:
            return
        times = routing.escalation.max_reassignments
        await self._notifier.send(
            uow.session,
            now,
            Message(
                "escalation_capped",
                row.lead_id,
                f"Lead {row.lead_id} stays with {current.owner}: escalation limit reached",
                f"Lead {row.lead_id} was reassigned {times} times without a first contact "
                f"(the contract's limit); it stays with {current.owner}. Please step in.",
                {
                    "lead_id": row.lead_id,
                    "owner": current.owner,
                    "team": current.team,
                    "reassignments": current.round,
                    "max_reassignments": times,
                },
                row.round,
            ),
            manager,
        )

    async def breached(
        self, uow: UnitOfWork, row: deadlines.DeadlineRow, now: datetime
    ) -> list[datetime]:
        """Notify and maybe reassign; returns the wake times of a fresh deadline armed."""
        contract = self._contracts.get(row.contract_version)
        routing = contract.routing
        if routing is None or row.owner is None:
            return []
        current = await store.assignment(uow.session, row.lead_id)
        team = current.team if current is not None else None
        clause = row.clause.replace("_", " ")
        late = (now - row.due_at).total_seconds()
        fields = {
            "lead_id": row.lead_id,
            "clause": row.clause,
            "owner": row.owner,
            "team": team,
            "deadline": row.due_at.isoformat(),
        }
        message = Message(
            f"breached.{row.clause}",
            row.lead_id,
            f"SLA breached: {clause} for lead {row.lead_id}",
            f"{row.owner} missed the {clause} deadline of lead {row.lead_id} "
            f"({row.due_at.isoformat()}, noticed {_minutes(late)} late).",
            fields,
            row.round,
        )
        await self._notifier.send(uow.session, now, message, member_recipient(routing, row.owner))
        manager = manager_recipient(routing, team)
        if manager is not None and routing.escalation.notify_manager:
            await self._notifier.send(uow.session, now, message, manager)
        if not (
            routing.escalation.reassign
            and row.clause == "first_contact"
            and current is not None
            and current.owner == row.owner  # still theirs: nobody moved it meanwhile
            and current.status == store.OPEN
        ):
            return []
        if current.round >= routing.escalation.max_reassignments:
            # Handing it on forever helps nobody: it stays with its owner, and the
            # manager (told even when breach notices to managers are off) decides.
            await self._capped(uow, routing, current, row, now, manager)
            return []
        turn = await assign.next_owner(
            uow,
            routing,
            current.team or routing.fallback_team,
            now,
            exclude=[row.owner],
            force=False,
        )
        if turn is None:
            return []  # nobody else available: the manager has been told
        new_team, member, new_pass, new_vtime = turn
        await store.take_turn(uow.session, new_team.id, member, new_pass, new_vtime)
        await assign.reassign(
            uow,
            now,
            routing,
            current,
            member,
            new_team.id,
            self._metrics,
            self._notifier,
            reason="escalation",
            by="sla-monitor",
            next_round=True,
            turn_taken=True,
        )
        fresh = first_contact_deadline(contract, now)
        armed = await deadlines.arm(
            uow.session,
            {
                "lead_id": row.lead_id,
                "clause": "first_contact",
                "round": row.round + 1,
                "started_at": now,
                "armed_at": now,
                "due_at": fresh.due_at,
                "at_risk_at": fresh.at_risk_at,
                "owner": member,
                "source": row.source,
                "contract_version": row.contract_version,
            },
        )
        if not armed:
            return []
        return [t for t in (fresh.due_at, fresh.at_risk_at) if t is not None]
