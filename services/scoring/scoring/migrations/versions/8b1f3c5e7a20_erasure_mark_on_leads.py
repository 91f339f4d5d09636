"""erasure mark on scoring leads (privacy.erased)

Revision ID: 8b1f3c5e7a20
Revises: 4424d51bac3c
Create Date: 2026-11-26 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '8b1f3c5e7a20'
down_revision: str | None = '4424d51bac3c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('scoring_leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scoring_leads', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
