"""candidates in a fixed order: (key, customer_id) and (sort_key, id) indexes

Revision ID: 3c1f9a7e2b54
Revises: 79eccce7b138
Create Date: 2026-12-06 04:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c1f9a7e2b54"
down_revision: str | None = "79eccce7b138"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        batch_op.create_index("ix_match_keys_key_customer_id", ["key", "customer_id"], unique=False)
        batch_op.drop_index("ix_match_keys_key")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_sort_key_id", ["sort_key", "id"], unique=False)
        batch_op.drop_index("ix_customers_sort_key")


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_sort_key", ["sort_key"], unique=False)
        batch_op.drop_index("ix_customers_sort_key_id")
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        batch_op.create_index("ix_match_keys_key", ["key"], unique=False)
        batch_op.drop_index("ix_match_keys_key_customer_id")
