"""Giving a lead its owner, inside the caller's unit of work: the routing decision, the
round-robin turn, the ``lead.assigned`` event, the owner's notification and (in the
caller) the first-contact deadline all commit together or not at all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadpact.contract import Routing, RoutingMember, RoutingTeam
from leadpact.events import LeadAssigned
from leadpact.messaging import UnitOfWork
from sla_monitor import store as deadlines
from sla_monitor.notify.queue import Message, Notifier, member_recipient
from sla_monitor.routing import store
from sla_monitor.routing.domain import (
    FORCE_ORDER,
    Candidate,
    LeadFacts,
    Unavailable,
    account_owner_refused,
    choose_team,
    is_away,
    pick,
)
from sla_monitor.routing.metrics import RoutingMetrics


@dataclass(frozen=True)
class Assignment:
    owner: str
    team: str | None
    rule: str | None
    reason: str
    fresh: bool  # False: the lead had its owner already (a redelivery, a race, the CRM)


def effective_member(member: RoutingMember, state: store.MemberState | None) -> RoutingMember:
    """The contract's member with the settings changed by API laid over it."""
    if state is None or not state.overrides:
        return member
    doc = member.model_dump(by_alias=True, exclude_none=True)
    doc.update(state.overrides)
    return RoutingMember.model_validate({k: v for k, v in doc.items() if v is not None})


def candidates(team: RoutingTeam, states: Mapping[str, store.MemberState]) -> list[Candidate]:
    found = []
    for member in team.members:
        state = states.get(member.id)
        found.append(
            Candidate(
                member=effective_member(member, state),
                pass_=state.virtual_pass if state else 0.0,
                open_leads=state.open_leads if state else 0,
                away_from=state.away_from if state else None,
                away_to=state.away_to if state else None,
            )
        )
    return found


async def _turn_in(
    uow: UnitOfWork,
    team: RoutingTeam,
    now: datetime,
    *,
    exclude: Sequence[str] = (),
    ignore: Sequence[Unavailable] = (),
) -> tuple[str, float, float | None] | None:
    """Lock the team's round-robin state and say whose turn it is (not yet taken). The
    lock makes two consumers assigning in one team take turns, so no turn is given twice
    (PostgreSQL; on SQLite the inbox insert that opens every handler's transaction
    already serialises writers)."""
    vtime, states = await store.turn_state(
        uow.session, team.id, [m.id for m in team.members], lock=not _is_sqlite(uow)
    )
    chosen = pick(candidates(team, states), vtime, now, exclude=exclude, ignore=ignore)
    if chosen is None:
        return None
    # The team row is written only when its virtual time moved (one statement less on
    # most turns); the lock taken by the read holds either way.
    moved = chosen.new_vtime if chosen.new_vtime != vtime else None
    return chosen.member_id, chosen.new_pass, moved


def _is_sqlite(uow: UnitOfWork) -> bool:
    bind = uow.session.bind
    return bind is None or bind.dialect.name == "sqlite"


async def next_owner(
    uow: UnitOfWork,
    routing: Routing,
    team_id: str,
    now: datetime,
    *,
    exclude: Sequence[str] = (),
    force: bool = True,
) -> tuple[RoutingTeam, str, float, float | None] | None:
    """The team's next available member; else the fallback team's; else (``force``) the
    fallback team's next member even out of hours or at capacity, then even away."""
    tried: list[RoutingTeam] = []
    for tid in dict.fromkeys([team_id, routing.fallback_team]):
        team = routing.team(tid)
        if team is None:
            continue
        tried.append(team)
        turn = await _turn_in(uow, team, now, exclude=exclude)
        if turn is not None:
            return (team, *turn)
    if force and tried:
        fallback = tried[-1]
        for ignore in FORCE_ORDER:
            turn = await _turn_in(uow, fallback, now, exclude=exclude, ignore=ignore)
            if turn is not None:
                return (fallback, *turn)
    return None


async def assign_new(
    uow: UnitOfWork,
    now: datetime,
    routing: Routing,
    facts: LeadFacts,
    lead_id: str,
    contract_version: str,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
) -> Assignment:
    """Route an MQL that became one just now: decided once per lead, whoever asks. The
    lead's primary key in the assignments decides (no read before): a redelivery, a
    second scoring or the CRM's earlier choice make the insert a no-op, and the turn is
    only taken when it inserted."""
    why: str | None = None
    if facts.existing_customer:
        why = await _refused(uow, routing, facts, now)
        if why is None and facts.account_owner is not None:
            return await _to_account_owner(
                uow, now, routing, facts.account_owner, lead_id, contract_version, metrics, notifier
            )
    team_id, rule = choose_team(routing, facts)
    decided = await next_owner(uow, routing, team_id, now)
    assert decided is not None, "routing validation guarantees a fallback team with members"
    team, member_id, new_pass, new_vtime = decided
    rule_name = rule.name if rule is not None and team.id == team_id else None
    inserted = await store.insert_assignment(
        uow.session,
        {
            "lead_id": lead_id,
            "owner": member_id,
            "team": team.id,
            "rule": rule_name,
            "reason": "routing",
            "contract_version": contract_version,
            "assigned_at": now,
        },
    )
    if not inserted:  # another consumer assigned it meanwhile: its decision stands
        current = await store.assignment(uow.session, lead_id)
        assert current is not None
        return Assignment(current.owner, current.team, current.rule, current.reason, False)
    open_now = await store.take_turn(uow.session, team.id, member_id, new_pass, new_vtime)
    await _announce(
        uow,
        now,
        routing,
        lead_id,
        contract_version,
        metrics,
        notifier,
        owner=member_id,
        team=team.id,
        rule=rule_name,
        reason="routing",
        open_now=open_now,
        why=why,
    )
    return Assignment(member_id, team.id, rule_name, "routing", True)


async def _refused(
    uow: UnitOfWork, routing: Routing, facts: LeadFacts, now: datetime
) -> str | None:
    """Why a returning customer's lead cannot go to its account owner (None: it can)."""
    away = False
    if facts.account_owner is not None and routing.member(facts.account_owner) is not None:
        state = (await store.members(uow.session, [facts.account_owner])).get(facts.account_owner)
        away = state is not None and is_away(state.away_from, state.away_to, now)
    return account_owner_refused(routing, facts, away)


async def _to_account_owner(
    uow: UnitOfWork,
    now: datetime,
    routing: Routing,
    owner: str,
    lead_id: str,
    contract_version: str,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
) -> Assignment:
    """A returning customer goes to its account owner: no rule, no round-robin turn (the
    lead still counts as open and assigned for them)."""
    taken = await _take_without_rules(
        uow, now, routing, lead_id, owner, contract_version, metrics, notifier,
        reason="account_owner", emit=True,
    )  # fmt: skip
    if taken is not None:
        return taken
    current = await store.assignment(uow.session, lead_id)
    assert current is not None
    return Assignment(current.owner, current.team, current.rule, current.reason, False)


async def _take_without_rules(
    uow: UnitOfWork,
    now: datetime,
    routing: Routing | None,
    lead_id: str,
    owner: str,
    contract_version: str | None,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
    *,
    reason: str,
    emit: bool,
) -> Assignment | None:
    """Give the lead to ``owner`` chosen outside the rules (its account owner, the CRM's
    pick); None when another delivery assigned it first (the unique lead decides)."""
    found = routing.member(owner) if routing is not None else None
    team = found[0].id if found else None
    inserted = await store.insert_assignment(
        uow.session,
        {
            "lead_id": lead_id,
            "owner": owner,
            "team": team,
            "rule": None,
            "reason": reason,
            "contract_version": contract_version,
            "assigned_at": now,
        },
    )
    if not inserted:
        return None
    await store.count_assignment(uow.session, owner, team)
    await _announce(
        uow, now, routing, lead_id, contract_version, metrics, notifier,
        owner=owner, team=team, rule=None, reason=reason, open_now=None, emit=emit,
    )  # fmt: skip
    return Assignment(owner, team, None, reason, True)


async def _announce(
    uow: UnitOfWork,
    now: datetime,
    routing: Routing | None,
    lead_id: str,
    contract_version: str | None,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
    *,
    owner: str,
    team: str | None,
    rule: str | None,
    reason: str,
    open_now: int | None,
    previous: str | None = None,
    by: str | None = None,
    why: str | None = None,
    round_: int = 0,
    emit: bool = True,
) -> None:
    """History row, event, metrics and the new owner's notification of one owner change."""
    await store.log(
        uow.session,
        {
            "lead_id": lead_id,
            "owner": owner,
            "previous_owner": previous,
            "team": team,
            "rule": rule,
            "reason": reason,
            "by": by,
            "why": why,
            "contract_version": contract_version,
            "at": now,
        },
    )
    if emit:
        uow.emit(
            LeadAssigned(
                lead_id=lead_id,
                owner=owner,
                team=team,
                rule=rule,
                note=why,
                reason=reason,  # type: ignore[arg-type]
                previous_owner=previous,
                by=by,
                contract_version=contract_version,
                assigned_at=now,
            ),
            contract_version,
        )
    uow.after_commit(metrics.assigned.labels(team or "none", owner).inc)
    if open_now is not None:
        metrics.open_leads.labels(owner).set(open_now)
    if notifier is not None:
        fields: dict[str, Any] = {
            "lead_id": lead_id,
            "owner": owner,
            "team": team,
            "rule": rule,
            "reason": reason,
        }
        if previous:
            fields["previous_owner"] = previous
        text = {
            "routing": f"New MQL {lead_id} is yours (team {team}, rule {rule or 'fallback'}).",
            "crm": f"MQL {lead_id} is yours (assigned in the CRM).",
            "account_owner": f"MQL {lead_id} is yours: a returning customer of your account.",
            "reassigned": f"MQL {lead_id} was handed to you by {by}: {why}.",
            "escalation": f"MQL {lead_id} is yours now: {previous} missed the first contact.",
        }.get(reason, f"MQL {lead_id} is yours.")
        await notifier.send(
            uow.session,
            now,
            Message("assigned", lead_id, f"New lead for you: {lead_id}", text, fields, round_),
            member_recipient(routing, owner),
        )


async def follow_crm(
    uow: UnitOfWork,
    now: datetime,
    routing: Routing | None,
    lead_id: str,
    owner: str,
    contract_version: str | None,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
    *,
    reason: str = "crm",
) -> None:
    """The CRM named the owner: it wins. Before routing ran, routing will not run; after,
    the lead moves to the CRM's owner and routing's pick is kept as ``routed_owner``."""
    found = routing.member(owner) if routing is not None else None
    team = found[0].id if found else None
    current = await store.assignment(uow.session, lead_id)
    if current is None:
        taken = await _take_without_rules(
            uow, now, routing, lead_id, owner, contract_version, metrics, notifier,
            reason=reason, emit=False,
        )  # fmt: skip
        if taken is not None:
            return
        current = await store.assignment(uow.session, lead_id)
        assert current is not None
    if current.owner == owner:
        return
    await reassign(
        uow,
        now,
        routing,
        current,
        owner,
        team,
        metrics,
        notifier,
        reason=reason,
        emit=False,
        keep_routed=True,
    )


async def _move_open(
    uow: UnitOfWork,
    metrics: RoutingMetrics,
    old: str,
    new: str,
    new_team: str | None,
    still_open: bool,
    new_counted: bool = False,
) -> None:
    """The old owner holds one open lead less, the new one one more (unless their
    round-robin turn counted it already)."""
    if not still_open:
        return
    for member, delta in sorted([(old, -1), (new, +1)]):  # fixed order: no deadlock
        if delta > 0 and not new_counted:
            await store.count_assignment(uow.session, member, new_team)
        left = await store.add_open(uow.session, member, min(delta, 0))
        if left is not None:
            metrics.open_leads.labels(member).set(left)


async def reassign(
    uow: UnitOfWork,
    now: datetime,
    routing: Routing | None,
    current: store.AssignmentRow,
    owner: str,
    team: str | None,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
    *,
    reason: str,
    by: str | None = None,
    why: str | None = None,
    next_round: bool = False,
    turn_taken: bool = False,
    emit: bool = True,
    keep_routed: bool = False,
) -> bool:
    """Hand an assigned lead to ``owner`` (a person's decision, an escalation, the CRM);
    False when its owner changed meanwhile. ``keep_routed`` remembers the previous owner
    as routing's pick; ``emit`` False when the event came from elsewhere (the CRM)."""
    # Read before the UPDATE, which refreshes the row object in the session.
    lead_id, previous, still_open = current.lead_id, current.owner, current.status == store.OPEN
    version, round_ = current.contract_version, current.round + (1 if next_round else 0)
    changed = await store.change_owner(
        uow.session,
        lead_id,
        expected=previous,
        owner=owner,
        team=team,
        reason=reason,
        at=now,
        next_round=next_round,
        routed_owner=previous if keep_routed else None,
    )
    if not changed:
        return False
    await _move_open(uow, metrics, previous, owner, team, still_open, turn_taken)
    await deadlines.set_owner(uow.session, lead_id, owner)
    await _announce(
        uow,
        now,
        routing,
        lead_id,
        version,
        metrics,
        notifier,
        owner=owner,
        team=team,
        rule=None,
        reason=reason,
        open_now=None,
        previous=previous,
        by=by,
        why=why,
        round_=round_,
        emit=emit,
    )
    return True


async def close(uow: UnitOfWork, lead_id: str, metrics: RoutingMetrics) -> None:
    """The lead was accepted or rejected: it no longer counts against its owner's capacity."""
    owner = await store.close(uow.session, lead_id)
    if owner is not None:
        left = await store.add_open(uow.session, owner, -1)
        if left is not None:
            metrics.open_leads.labels(owner).set(left)
