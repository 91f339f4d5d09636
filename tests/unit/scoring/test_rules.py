"""The contract's MQL rules and the tier decision, without a database or a bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadpact.contract import Contract, load_contract
from scoring.domain.rules import (
    Occurrence,
    RuleOutcome,
    apply_rules,
    decide_tier,
    lead_fields,
    worth_announcing,
)
from tests.fixtures.system import TEST_CONTRACT

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract(TEST_CONTRACT)


def with_rules(contract: Contract, **mql: object) -> Contract:
    doc = contract.model_dump(by_alias=True)
    doc["mql"].update(mql)
    return Contract.model_validate(doc)


def good_lead() -> dict[str, object]:
    return lead_fields(
        {
            "email": "Ana@Acme.example",
            "phone": "+34600000000",
            "company": "Acme",
            "title": "Head of Operations",
            "company_size": 120,
        }
    )


def test_email_domain_is_derived_lower_case() -> None:
    assert lead_fields({"email": "Ana@ACME.Example"})["email_domain"] == "acme.example"
    assert "email_domain" not in lead_fields({"email": None})


def test_every_field_rule_that_holds_adds_points_with_a_reason(contract: Contract) -> None:
    outcome = apply_rules(contract, good_lead(), [], NOW)
    assert outcome.points == 20 + 15 + 10 + 10 + 5
    assert "+20 title: Head of Operations" in outcome.reasons
    assert "+15 company_size: 120" in outcome.reasons
    assert outcome.disqualified_by is None


def test_missing_and_non_numeric_fields_never_hold(contract: Contract) -> None:
    outcome = apply_rules(contract, lead_fields({"company_size": "many"}), [], NOW)
    assert outcome.points == 0 and outcome.reasons == []


def test_disqualifier_in_named_list_wins_over_points(contract: Contract) -> None:
    lead = {**good_lead(), **lead_fields({"email": "ana@GMAIL.com"})}
    outcome = apply_rules(contract, lead, [], NOW)
    assert outcome.disqualified_by == "email_domain"
    assert decide_tier(contract, outcome, probability=0.99) == "disqualified"


@pytest.mark.parametrize(
    ("rule", "value", "holds"),
    [
        ({"field": "size", "lte": 10, "points": 1}, 10, True),
        ({"field": "size", "lte": 10, "points": 1}, 11, False),
        ({"field": "size", "gte": 10, "points": 1}, "12", True),
        ({"field": "country", "equals": "es", "points": 1}, "ES", True),
        ({"field": "country", "in": ["fr", "de"], "points": 1}, "ES", False),
        ({"field": "country", "in": ["fr", "es"], "points": 1}, "es", True),
        ({"field": "title", "matches": "^VP", "points": 1}, "vp sales", False),
    ],
)
def test_operators(contract: Contract, rule: dict[str, object], value: object, holds: bool) -> None:
    custom = with_rules(contract, points=[rule], disqualify=[])
    field = str(rule["field"])
    assert apply_rules(custom, {field: value}, [], NOW).points == (1 if holds else 0)


def test_activity_points_decay_by_half_life_and_cap_at_max(contract: Contract) -> None:
    fresh = [Occurrence("pricing_page_view", NOW)]
    two_weeks_old = [Occurrence("pricing_page_view", NOW - timedelta(days=14))]
    many = [Occurrence("pricing_page_view", NOW - timedelta(minutes=i)) for i in range(10)]
    other = [Occurrence("webinar", NOW)]
    assert apply_rules(contract, {}, fresh, NOW).points == 10
    assert apply_rules(contract, {}, two_weeks_old, NOW).points == 5
    assert apply_rules(contract, {}, many, NOW).points == 30
    assert apply_rules(contract, {}, other, NOW).points == 0
    assert apply_rules(contract, {}, fresh, NOW).reasons == ["+10 activity: pricing_page_view x1"]


def test_tier_needs_threshold_and_model_agreement(contract: Contract) -> None:
    strong, weak = RuleOutcome(60), RuleOutcome(40)
    assert decide_tier(contract, strong, None) == "mql"  # no model: rules decide
    assert decide_tier(contract, strong, 0.5) == "mql"
    assert decide_tier(contract, strong, 0.1) == "nurture"
    assert decide_tier(contract, weak, 0.9) == "nurture"
    assert decide_tier(contract, RuleOutcome(50), None) == "mql"  # threshold is inclusive


def test_rescore_is_announced_on_tier_change_or_big_move() -> None:
    assert worth_announcing(None, "nurture", 0, 10)
    assert not worth_announcing(("nurture", 20), "nurture", 29, 10)
    assert worth_announcing(("nurture", 20), "nurture", 30, 10)
    assert worth_announcing(("nurture", 45), "mql", 50, 10)
