"""The batch lookup's prebuilt statements keep a cache key (compiled once per dialect and
IN-list length, not on every request), and the phone lookup passes merged records over as
the single one does."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from crm_sync import store


@pytest.mark.parametrize(
    "statement",
    [
        store._EMAIL_HOLDERS,
        store._PHONE_HOLDERS,
        store._CUSTOMERS,
        store._ATTRIBUTES_OF_MANY,
        store._LINKS_OF_MANY,
    ],
    ids=["email_holders", "phone_holders", "customers", "attributes", "links"],
)
def test_the_batch_lookup_statements_are_cacheable(statement: object) -> None:
    assert statement._generate_cache_key() is not None  # type: ignore[attr-defined]


def test_only_the_phone_lookup_skips_merged_records() -> None:
    phones = str(store._PHONE_HOLDERS.compile(dialect=sqlite.dialect()))
    emails = str(store._EMAIL_HOLDERS.compile(dialect=postgresql.dialect()))
    assert "(customers.merged_into || ?) IS NULL" in phones
    assert "merged_into" not in emails.split("FROM", 1)[1].split("UNION ALL")[0]
