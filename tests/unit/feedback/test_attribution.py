"""Attribution models and the bonus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from feedback.domain.attribution import (
    MODELS,
    Touch,
    attribute,
    bonus,
    by_campaign,
    credit,
    weights,
)
from feedback.domain.funnel import LeadFacts

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def touches(*campaigns: str) -> list[Touch]:
    return [Touch(T0 + timedelta(days=i), "t", c) for i, c in enumerate(campaigns)]


FIVE = touches("a", "b", "c", "d", "e")
MQL = T0 + timedelta(days=1, hours=1)  # after b
SQL = T0 + timedelta(days=3, hours=1)  # after d


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("first_touch", [1, 0, 0, 0, 0]),
        ("last_touch", [0, 0, 0, 0, 1]),
        ("linear", [0.2] * 5),
        ("u_shaped", [0.4, 0.4, 0.2 / 3, 0.2 / 3, 0.2 / 3]),
        ("w_shaped", [0.3, 0.3, 0.05, 0.3, 0.05]),
    ],
)
def test_models_on_five_touches(model: str, expected: list[float]) -> None:
    assert weights(FIVE, model, MQL, SQL) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_deal_is_credited_exactly_once(model: str, count: int) -> None:
    found = weights(touches(*"abcdefg"[:count]), model, MQL, SQL)  # type: ignore[arg-type]
    assert sum(found) == pytest.approx(1.0)
    assert all(w >= 0 for w in found)


def test_coinciding_key_touches_add_up_and_are_scaled() -> None:
    two = touches("a", "b")
    # u-shaped: first and lead creation (b) take 40 % each, nobody else: 50/50
    assert weights(two, "u_shaped", MQL, SQL) == pytest.approx([0.5, 0.5])
    # w-shaped: first a (.3), lead creation b (.3), opportunity b (.3): scaled to 1/3, 2/3
    assert weights(two, "w_shaped", MQL, SQL) == pytest.approx([1 / 3, 2 / 3])
    assert credit(touches("a", "a", "b"), "linear", None, None) == pytest.approx(
        {"a": 2 / 3, "b": 1 / 3}
    )


def test_attribute_and_bonus() -> None:
    won = T0 + timedelta(days=10)
    leads = [
        LeadFacts("x", mql_at=MQL, sql_at=SQL, won_at=won, amount=Decimal("1000")),
        LeadFacts("y", won_at=won, amount=Decimal("500")),  # no touchpoints
        LeadFacts("z", won_at=won + timedelta(days=60), amount=Decimal("9")),  # outside
    ]
    rows = attribute(leads, {"x": FIVE}, T0, T0 + timedelta(days=30), "w_shaped")
    campaigns = {r["campaign"]: r["revenue"] for r in by_campaign(rows)}
    assert campaigns == pytest.approx(
        {"a": 300, "b": 300, "c": 50, "d": 300, "e": 50, "(unattributed)": 500}
    )
    paid = {r["campaign"]: r["bonus"] for r in bonus(rows, 0.02)}
    assert paid["a"] == pytest.approx(6.0) and paid["(unattributed)"] == 0.0
