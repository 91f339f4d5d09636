"""routing: returning customers' account owner

Revision ID: c7d2a91e4f05
Revises: b41c9e2d7a10
Create Date: 2026-11-26 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c7d2a91e4f05'
down_revision: str | None = 'b41c9e2d7a10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('routing_leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('existing_customer', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('account_owner', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('routing_leads', schema=None) as batch_op:
        batch_op.drop_column('account_owner')
        batch_op.drop_column('existing_customer')
