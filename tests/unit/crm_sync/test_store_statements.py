"""crm-sync's prebuilt statements keep a cache key: SQLAlchemy then compiles each once per
dialect. A construct without one (e.g. a custom element lacking ``_traverse_internals``)
silently makes every statement containing it compile on every execution."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from crm_sync import store


@pytest.mark.parametrize(
    "statement",
    [
        store._BY_PHONE,
        store._BY_TAX_ID,
        store._BY_IDENTITY,
        store._KNOWN,
        store._candidates_of_one(3),
        store._CANDIDATES_OF_BATCH_ON_SQLITE,
        store._CANDIDATES_OF_BATCH_ON_POSTGRESQL,
    ],
    ids=[
        "by_phone",
        "by_tax_id",
        "by_identity",
        "known",
        "candidates",
        "batch_candidates_sqlite",
        "batch_candidates_postgresql",
    ],
)
def test_the_lookup_statements_are_cacheable(statement: object) -> None:
    assert statement._generate_cache_key() is not None  # type: ignore[attr-defined]


def test_not_merged_is_unindexable_on_sqlite_and_plain_on_postgresql() -> None:
    """SQLite without statistics would walk every live customer through the merged_into
    index; PostgreSQL estimates the plain test well."""
    sql = str(store._BY_PHONE.compile(dialect=sqlite.dialect()))
    assert "(customers.merged_into || ?) IS NULL" in sql
    assert "customers.merged_into IS NULL" in str(
        store._BY_PHONE.compile(dialect=postgresql.dialect())
    )
