"""What an MQL sets on its lead's row, from what the row held before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from feedback.domain.projection import created_facts, mql_facts
from leadpact.events import LeadCreated, LeadScored, LeadSource

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Stored:
    source: str | None = None
    mql_at: datetime | None = None


def mql(at: datetime = T0, source: str | None = "ads") -> LeadScored:
    return LeadScored(lead_id="a", points=70, tier="mql", scored_at=at, source=source)


def test_the_first_mql_sets_points_version_and_a_missing_source() -> None:
    expected = {"mql_at__earliest": T0, "points": 70, "contract_version": "v1", "source": "ads"}
    assert mql_facts(mql(), "v1", None) == expected
    assert mql_facts(mql(), "v1", Stored(source="")) == expected
    assert mql_facts(mql(), "v1", Stored(mql_at=T0 + timedelta(hours=1))) == expected


def test_a_later_mql_keeps_points_version_and_the_stored_source() -> None:
    facts = mql_facts(mql(), "v2", Stored(source="web", mql_at=T0 - timedelta(hours=1)))
    assert facts == {
        "mql_at__earliest": T0,
        "points": None,
        "contract_version": None,
        "source": None,
    }


def test_every_event_of_a_type_gives_the_same_keys() -> None:
    """A batch's facts go in one statement: its columns are the keys."""
    plain = LeadCreated(lead_id="a", created_at=T0)
    utm = LeadCreated(lead_id="b", created_at=T0, source=LeadSource(utm_campaign="u"))
    assert created_facts(plain).keys() == created_facts(utm).keys()
    assert created_facts(utm)["campaign"] == "u"
    assert mql_facts(mql(), "v1", None).keys() == mql_facts(mql(), None, Stored("w", T0)).keys()
