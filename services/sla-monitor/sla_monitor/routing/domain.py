"""Routing decisions: which rule takes a lead, who in the team is available, whose turn it
is. Pure, no I/O: the store loads the state, these functions decide, the store writes back.

Weighted round-robin is stride scheduling over the members' shares: each member carries a
*pass* (virtual time of the turns they had, each turn worth ``1 / share``); the available
member with the smallest ``max(pass, vtime) + 1 / share`` wins. The team's ``vtime`` is the
smallest pass among the members available at the last turn, so a member who was away or
out of hours re-enters at it instead of catching up with a burst of leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from leadpact.contract import Routing, RoutingMatch, RoutingMember, RoutingRule, WorkingHours

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Unavailable = Literal["out_of_hours", "away", "at_capacity"]


@dataclass(frozen=True)
class LeadFacts:
    """What routing rules may look at. Unknown fields are None and match no condition."""

    tier: str = "mql"
    probability: float | None = None
    source: str | None = None
    country: str | None = None
    company_size: int | None = None
    industry: str | None = None
    existing_customer: bool = False  # flagged by crm-sync at intake
    account_owner: str | None = None  # owner of the customer's latest earlier lead


def _in(value: str | None, allowed: Sequence[str]) -> bool:
    return value is not None and value.casefold() in {a.casefold() for a in allowed}


def matches(match: RoutingMatch, facts: LeadFacts, regions: dict[str, list[str]]) -> bool:
    """Every condition of ``match`` holds for the lead (an empty match takes any lead)."""
    if match.country is not None and not _in(facts.country, match.country):
        return False
    if match.region is not None:
        countries = [c for name in match.region for c in regions.get(name, [])]
        if not _in(facts.country, countries):
            return False
    if match.company_size is not None and not match.company_size.contains(facts.company_size):
        return False
    if match.industry is not None and not _in(facts.industry, match.industry):
        return False
    if match.source is not None and not _in(facts.source, match.source):
        return False
    if match.tier is not None and facts.tier not in match.tier:
        return False
    return match.probability is None or match.probability.contains(facts.probability)


def choose_team(routing: Routing, facts: LeadFacts) -> tuple[str, RoutingRule | None]:
    """The team of the first rule that matches, else the fallback team (rule None)."""
    for rule in routing.rules:
        if matches(rule.match, facts, routing.regions):
            return rule.team, rule
    return routing.fallback_team, None


def account_owner_refused(routing: Routing, facts: LeadFacts, away: bool) -> str | None:
    """Why a returning customer's lead does not go to its account owner (None: it does).
    Out of hours or at capacity do not count: the customer is theirs, not a new lead to
    share out; away does (nobody would answer)."""
    owner = facts.account_owner
    if owner is None:
        return "returning customer: no account owner known (no earlier lead was assigned)"
    if routing.member(owner) is None:
        return f"returning customer: account owner {owner} is not a routing member"
    if away:
        return f"returning customer: account owner {owner} is away"
    return None


def in_hours(hours: WorkingHours | None, timezone: str, now: datetime) -> bool:
    """``now`` falls in the member's working window, in their own timezone."""
    if hours is None:
        return True
    local = now.astimezone(ZoneInfo(timezone))
    if WEEKDAYS[local.weekday()] not in hours.days:
        return False
    return hours.from_ <= local.time().replace(tzinfo=None) < hours.to


def is_away(away_from: datetime | None, away_to: datetime | None, now: datetime) -> bool:
    """Away from ``away_from`` (or since ever) until ``away_to`` (or until told otherwise);
    no dates at all means not away."""
    if away_from is None and away_to is None:
        return False
    return (away_from is None or away_from <= now) and (away_to is None or now < away_to)


@dataclass(frozen=True)
class Candidate:
    """A member as the round-robin sees them at one instant."""

    member: RoutingMember
    pass_: float
    open_leads: int
    away_from: datetime | None = None
    away_to: datetime | None = None

    def unavailable(self, now: datetime) -> Unavailable | None:
        """Why this member cannot take a lead now, or None when they can."""
        if is_away(self.away_from, self.away_to, now):
            return "away"
        if not in_hours(self.member.hours, self.member.timezone, now):
            return "out_of_hours"
        if self.member.capacity is not None and self.open_leads >= self.member.capacity:
            return "at_capacity"
        return None


@dataclass(frozen=True)
class Pick:
    member_id: str
    new_pass: float
    new_vtime: float


def pick(
    candidates: Sequence[Candidate],
    vtime: float,
    now: datetime,
    *,
    exclude: Sequence[str] = (),
    ignore: Sequence[Unavailable] = (),
) -> Pick | None:
    """Whose turn it is among the available candidates (in their listed order on ties);
    None when nobody is available. ``ignore`` lists reasons that do not count (used to
    force an owner when every member of the fallback team is unavailable)."""
    available: list[tuple[int, Candidate, float]] = []
    for index, cand in enumerate(candidates):
        if cand.member.id in exclude:
            continue
        reason = cand.unavailable(now)
        if reason is not None and reason not in ignore:
            continue
        available.append((index, cand, max(cand.pass_, vtime)))
    if not available:
        return None
    index, chosen, start = min(available, key=lambda a: (a[2] + 1.0 / a[1].member.share, a[0]))
    finish = start + 1.0 / chosen.member.share
    # The team's virtual time: the smallest pass among the members available now. A member
    # who stays available never falls below it; one who was away re-enters at it.
    new_vtime = min(finish if i == index else s for i, _, s in available)
    return Pick(chosen.member.id, finish, new_vtime)


FORCE_ORDER: tuple[tuple[Unavailable, ...], ...] = (
    ("out_of_hours", "at_capacity"),
    ("out_of_hours", "at_capacity", "away"),
)
"""When nobody in the fallback team is available: first take someone out of hours or at
capacity (they will see it when they are back), only then someone marked away."""
