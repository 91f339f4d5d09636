"""Giving a lead its owner, inside the caller's unit of work: the routing decision, the
round-robin turn, the ``lead.assigned`` event, the owner's notification and (in the
caller) the first-contact deadline all commit together or not at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
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


TurnReader = Callable[[RoutingTeam], Awaitable[tuple[float, Mapping[str, store.MemberState]]]]
"""Where a turn reads a team's virtual time and its members' round-robin state."""


def locked_turns(uow: UnitOfWork) -> TurnReader:
    """The store's state, locked. The lock makes two consumers assigning in one team take
    turns, so no turn is given twice (PostgreSQL; on SQLite the inbox insert that opens
    every handler's transaction already serialises writers)."""
    lock = not _is_sqlite(uow)

    async def read(team: RoutingTeam) -> tuple[float, Mapping[str, store.MemberState]]:
        return await store.turn_state(uow.session, team.id, [m.id for m in team.members], lock=lock)

    return read


class TurnBook:
    """The round-robin of a run of assignments in one transaction (a consumer batch's
    MQLs): each team's state read and locked once, on its first turn, the turns taken in
    memory in the run's order, the rows written back once (:meth:`write`). The turns
    given are those :func:`next_owner` and :func:`store.take_turn` give one by one: the
    same state, read under the same locks, moved the same way."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._read = locked_turns(uow)
        self._uow = uow
        self._vtimes: dict[str, float] = {}
        self._read_vtimes: dict[str, float] = {}
        self._members: dict[str, store.MemberState] = {}
        self._turns: dict[str, int] = {}

    async def read(self, team: RoutingTeam) -> tuple[float, Mapping[str, store.MemberState]]:
        if team.id not in self._vtimes:
            vtime, states = await self._read(team)
            self._vtimes[team.id] = self._read_vtimes[team.id] = vtime
            for member_id, state in states.items():
                self._members.setdefault(member_id, state)
        return self._vtimes[team.id], self._members

    def take(self, team_id: str, member_id: str, new_pass: float, new_vtime: float | None) -> int:
        """The turn, taken in memory; the member's open leads after it."""
        state = self._members[member_id]
        open_now = state.open_leads + 1
        self._members[member_id] = store.TurnState(
            new_pass, open_now, state.away_from, state.away_to, state.overrides
        )
        self._turns[member_id] = self._turns.get(member_id, 0) + 1
        if new_vtime is not None:
            self._vtimes[team_id] = new_vtime
        return open_now

    async def write(self) -> None:
        """Each member's last pass and turn count, each moved team's virtual time."""
        passes = {m: (self._members[m].virtual_pass, n) for m, n in self._turns.items()}
        moved = {t: v for t, v in self._vtimes.items() if v != self._read_vtimes[t]}
        await store.take_turns(self._uow.session, passes, moved)


async def _turn_in(
    read: TurnReader,
    team: RoutingTeam,
    now: datetime,
    *,
    exclude: Sequence[str] = (),
    ignore: Sequence[Unavailable] = (),
) -> tuple[str, float, float | None] | None:
    """Read the team's round-robin state and say whose turn it is (not yet taken)."""
    vtime, states = await read(team)
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
    turns: TurnReader | None = None,
) -> tuple[RoutingTeam, str, float, float | None] | None:
    """The team's next available member; else the fallback team's; else (``force``) the
    fallback team's next member even out of hours or at capacity, then even away. The
    state comes from ``turns`` (a run's :class:`TurnBook`), else from the store, locked."""
    read = turns or locked_turns(uow)
    tried: list[RoutingTeam] = []
    for tid in dict.fromkeys([team_id, routing.fallback_team]):
        team = routing.team(tid)
        if team is None:
            continue
        tried.append(team)
        turn = await _turn_in(read, team, now, exclude=exclude)
        if turn is not None:
            return (team, *turn)
    if force and tried:
        fallback = tried[-1]
        for ignore in FORCE_ORDER:
            turn = await _turn_in(read, fallback, now, exclude=exclude, ignore=ignore)
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


@dataclass(frozen=True)
class NewMql:
    """A lead that became an MQL just now, to route in a run (:func:`assign_run`)."""

    lead_id: str
    facts: LeadFacts
    at: datetime


class AssignedMeanwhile(RuntimeError):
    """A lead of a run got an owner between the caller's look and the run's insert (another
    consumer): the run cannot stand as decided; its batch is handled again one by one."""


async def _lock_in_order(book: TurnBook, routing: Routing, leads: Sequence[NewMql]) -> None:
    """Read (and lock) every team the run may take a turn in, by team id, before any turn.

    Locked on first use, in the order of a batch's leads, two partitions' batches spanning
    the same teams took them in opposite orders and deadlocked (PostgreSQL breaks that only
    after ``deadlock_timeout``, 1 s, and the batch then went one by one: seconds of arming
    lag under load). The fallback team is included: any turn may end up there."""
    teams = {choose_team(routing, lead.facts)[0] for lead in leads} | {routing.fallback_team}
    for team_id in sorted(teams):
        team = routing.team(team_id)
        if team is not None:
            await book.read(team)


async def assign_run(
    uow: UnitOfWork,
    routing: Routing,
    leads: Sequence[NewMql],
    contract_version: str,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
) -> list[Assignment]:
    """:func:`assign_new` for each of ``leads`` in order, for leads the caller saw without
    an owner and that are not returning customers (those it routes one by one): the same
    owners, turns, rows and events, with each team's round-robin state read once and one
    statement per table for the writes."""
    book = TurnBook(uow)
    await _lock_in_order(book, routing, leads)
    changes: list[OwnerChange] = []
    for lead in leads:
        team_id, rule = choose_team(routing, lead.facts)
        decided = await next_owner(uow, routing, team_id, lead.at, turns=book.read)
        assert decided is not None, "routing validation guarantees a fallback team with members"
        team, member_id, new_pass, new_vtime = decided
        rule_name = rule.name if rule is not None and team.id == team_id else None
        open_now = book.take(team.id, member_id, new_pass, new_vtime)
        change = OwnerChange(
            lead.lead_id, member_id, team.id, rule_name, "routing", contract_version,
            lead.at, open_now,
        )  # fmt: skip
        changes.append(change)
    inserted = await store.insert_assignments(
        uow.session,
        [
            {
                "lead_id": c.lead_id,
                "owner": c.owner,
                "team": c.team,
                "rule": c.rule,
                "reason": c.reason,
                "contract_version": c.contract_version,
                "assigned_at": c.at,
            }
            for c in changes
        ],
    )
    if len(inserted) != len(changes):
        raise AssignedMeanwhile(sorted({c.lead_id for c in changes} - inserted))
    await book.write()
    await announce_all(uow, routing, metrics, notifier, changes)
    return [Assignment(c.owner, c.team, c.rule, c.reason, True) for c in changes]


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


@dataclass(frozen=True)
class OwnerChange:
    """One change of a lead's owner, as announced: its history row, its ``lead.assigned``
    event, its metrics and the new owner's notification."""

    lead_id: str
    owner: str
    team: str | None
    rule: str | None
    reason: str
    contract_version: str | None
    at: datetime
    open_now: int | None = None  # the owner's open leads after it, when a turn counted it
    previous: str | None = None
    by: str | None = None
    why: str | None = None
    round_: int = 0
    emit: bool = True

    def history(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "owner": self.owner,
            "previous_owner": self.previous,
            "team": self.team,
            "rule": self.rule,
            "reason": self.reason,
            "by": self.by,
            "why": self.why,
            "contract_version": self.contract_version,
            "at": self.at,
        }

    def event(self) -> LeadAssigned:
        return LeadAssigned(
            lead_id=self.lead_id,
            owner=self.owner,
            team=self.team,
            rule=self.rule,
            note=self.why,
            reason=self.reason,  # type: ignore[arg-type]
            previous_owner=self.previous,
            by=self.by,
            contract_version=self.contract_version,
            assigned_at=self.at,
        )

    def message(self) -> Message:
        fields: dict[str, Any] = {
            "lead_id": self.lead_id,
            "owner": self.owner,
            "team": self.team,
            "rule": self.rule,
            "reason": self.reason,
        }
        if self.previous:
            fields["previous_owner"] = self.previous
        lead_id = self.lead_id
        text = {
            "routing": f"New MQL {lead_id} is yours (team {self.team}, rule "
            f"{self.rule or 'fallback'}).",
            "crm": f"MQL {lead_id} is yours (assigned in the CRM).",
            "account_owner": f"MQL {lead_id} is yours: a returning customer of your account.",
            "reassigned": f"MQL {lead_id} was handed to you by {self.by}: {self.why}.",
            "escalation": f"MQL {lead_id} is yours now: {self.previous} missed the first contact.",
        }.get(self.reason, f"MQL {lead_id} is yours.")
        return Message(
            "assigned", lead_id, f"New lead for you: {lead_id}", text, fields, self.round_
        )


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
    change = OwnerChange(
        lead_id, owner, team, rule, reason, contract_version, now,
        open_now, previous, by, why, round_, emit,
    )  # fmt: skip
    await announce_all(uow, routing, metrics, notifier, [change])


async def announce_all(
    uow: UnitOfWork,
    routing: Routing | None,
    metrics: RoutingMetrics,
    notifier: Notifier | None,
    changes: Sequence[OwnerChange],
) -> None:
    """Announce owner changes in order: their history rows in one insert, their events
    and metrics, their notifications in one insert (rows and events in the order the
    changes were made)."""
    await store.log(uow.session, [change.history() for change in changes])
    for change in changes:
        if change.emit:
            uow.emit(change.event(), change.contract_version)
        uow.after_commit(metrics.assigned.labels(change.team or "none", change.owner).inc)
        if change.open_now is not None:
            metrics.open_leads.labels(change.owner).set(change.open_now)
    if notifier is not None:
        await notifier.send_all(
            uow.session,
            [(c.at, c.message(), member_recipient(routing, c.owner)) for c in changes],
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
