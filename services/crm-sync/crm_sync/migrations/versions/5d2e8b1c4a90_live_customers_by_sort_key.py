"""live customers by sort key: a partial (sort_key, id) index, PostgreSQL only

Revision ID: 5d2e8b1c4a90
Revises: 3c1f9a7e2b54
Create Date: 2026-12-06 10:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d2e8b1c4a90"
down_revision: str | None = "3c1f9a7e2b54"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _on_postgresql():
        op.create_index(
            "ix_customers_live_sort_key_id",
            "customers",
            ["sort_key", "id"],
            postgresql_where=sa.text("merged_into IS NULL"),
        )


def downgrade() -> None:
    if _on_postgresql():
        op.drop_index("ix_customers_live_sort_key_id", table_name="customers")
