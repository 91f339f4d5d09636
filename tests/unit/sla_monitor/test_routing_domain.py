"""Routing decisions without I/O: rule matching, working hours in the member's timezone,
away and capacity, and the weighted round-robin's fairness."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from leadpact.contract import Routing, RoutingMember
from sla_monitor.routing.domain import (
    Candidate,
    LeadFacts,
    account_owner_refused,
    choose_team,
    in_hours,
    is_away,
    pick,
)

MONDAY_9_UTC = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

ROUTING = Routing.model_validate(
    {
        "regions": {"iberia": ["ES", "PT"]},
        "teams": [
            {"id": "ent", "members": [{"id": "a"}]},
            {"id": "smb", "members": [{"id": "b"}]},
            {"id": "fintech", "members": [{"id": "c"}]},
        ],
        "rules": [
            {
                "name": "big-iberia",
                "match": {"region": ["iberia"], "company_size": {"gte": 200}},
                "team": "ent",
            },
            {
                "name": "banks",
                "match": {"industry": ["Banking"], "source": ["meta"]},
                "team": "fintech",
            },
            {"name": "hot", "match": {"probability": {"gte": 0.8}, "tier": ["mql"]}, "team": "ent"},
        ],
        "fallback_team": "smb",
    }
)


def member(id_: str, **kw: object) -> RoutingMember:
    return RoutingMember.model_validate({"id": id_, **kw})


def test_first_matching_rule_picks_the_team() -> None:
    big = LeadFacts(country="es", company_size=500, probability=0.9)
    team, rule = choose_team(ROUTING, big)
    assert (team, rule and rule.name) == ("ent", "big-iberia")
    bank = LeadFacts(industry="banking", source="META", probability=0.9)
    assert choose_team(ROUTING, bank)[1].name == "banks"  # type: ignore[union-attr]
    assert choose_team(ROUTING, LeadFacts(probability=0.85))[0] == "ent"


def test_unknown_fields_match_nothing_and_fall_back() -> None:
    team, rule = choose_team(ROUTING, LeadFacts(country=None, company_size=None))
    assert (team, rule) == ("smb", None)
    small = LeadFacts(country="ES", company_size=10)
    assert choose_team(ROUTING, small) == ("smb", None)


def test_working_hours_are_the_members_own() -> None:
    hours = member("x", hours={"from": "09:00", "to": "17:00"}).hours
    # 09:00 UTC on a Monday: 10:00 in Madrid, 04:00 in New York.
    assert in_hours(hours, "Europe/Madrid", MONDAY_9_UTC)
    assert not in_hours(hours, "America/New_York", MONDAY_9_UTC)
    assert in_hours(hours, "America/New_York", MONDAY_9_UTC + timedelta(hours=5))
    saturday = MONDAY_9_UTC - timedelta(days=2)
    assert not in_hours(hours, "Europe/Madrid", saturday)
    assert in_hours(None, "UTC", saturday)  # no hours: always available


def test_away_window() -> None:
    now = MONDAY_9_UTC
    assert not is_away(None, None, now)
    assert is_away(now - timedelta(days=1), now + timedelta(days=1), now)
    assert not is_away(now + timedelta(hours=1), None, now)
    assert not is_away(None, now, now)  # back at away_to


def turns(
    cands: list[Candidate], n: int, now: datetime = MONDAY_9_UTC, vtime: float = 0.0
) -> Counter[str]:
    state = {c.member.id: c for c in cands}
    got = Counter[str]()
    for _ in range(n):
        chosen = pick(list(state.values()), vtime, now)
        assert chosen is not None
        got[chosen.member_id] += 1
        vtime = chosen.new_vtime
        old = state[chosen.member_id]
        state[chosen.member_id] = Candidate(old.member, chosen.new_pass, old.open_leads + 1)
    return got


def test_weighted_round_robin_follows_shares_within_one() -> None:
    cands = [
        Candidate(member("a", share=3), 0.0, 0),
        Candidate(member("b", share=2), 0.0, 0),
        Candidate(member("c", share=1), 0.0, 0),
    ]
    for n in (1, 5, 6, 17, 600):
        got = turns(cands, n)
        for c in cands:
            expected = n * c.member.share / 6
            assert abs(got[c.member.id] - expected) <= 1, (n, got)


def test_unavailable_members_are_skipped_with_their_reason() -> None:
    now = MONDAY_9_UTC
    night = Candidate(
        member("ny", timezone="America/New_York", hours={"from": "09:00", "to": "17:00"}), 0.0, 0
    )
    away = Candidate(member("away"), 0.0, 0, away_from=now - timedelta(days=1))
    full = Candidate(member("full", capacity=2), 0.0, 2)
    free = Candidate(member("free", share=0.5), 50.0, 0)
    assert night.unavailable(now) == "out_of_hours"
    assert away.unavailable(now) == "away"
    assert full.unavailable(now) == "at_capacity"
    chosen = pick([night, away, full, free], 0.0, now)
    assert chosen is not None and chosen.member_id == "free"
    assert pick([night, away, full], 0.0, now) is None
    forced = pick([night, away, full], 0.0, now, ignore=("out_of_hours", "at_capacity"))
    assert forced is not None and forced.member_id == "ny"
    assert pick([free], 0.0, now, exclude=["free"]) is None


def test_a_member_back_from_away_gets_no_burst() -> None:
    # b was away while a took 100 turns: b re-enters at the team's virtual time.
    a = Candidate(member("a"), 100.0, 0)
    b = Candidate(member("b"), 0.0, 0)
    got = turns([a, b], 10, vtime=99.5)
    assert got == Counter({"a": 5, "b": 5})


def test_a_returning_customer_goes_to_its_account_owner_unless_they_cannot_take_it() -> None:
    customer = LeadFacts(existing_customer=True, account_owner="b")
    assert account_owner_refused(ROUTING, customer, away=False) is None
    assert account_owner_refused(ROUTING, customer, away=True) == (
        "returning customer: account owner b is away"
    )
    stranger = LeadFacts(existing_customer=True, account_owner="someone@crm.example")
    assert account_owner_refused(ROUTING, stranger, away=False) == (
        "returning customer: account owner someone@crm.example is not a routing member"
    )
    unknown = LeadFacts(existing_customer=True)
    assert "no account owner known" in str(account_owner_refused(ROUTING, unknown, away=False))
