"""sla deadlines: the lead.scored partition that owns each deadline

Revision ID: e5b17c3d9a42
Revises: c7d2a91e4f05
Create Date: 2026-11-26 06:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e5b17c3d9a42'
down_revision: str | None = 'c7d2a91e4f05'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: deadlines armed before this revision have no partition and stay watched
    # by every instance (the conditional update keeps their breach single).
    with op.batch_alter_table('sla_deadlines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partition', sa.Integer(), nullable=True))
        batch_op.drop_index('ix_sla_deadlines_status_due')
        batch_op.drop_index('ix_sla_deadlines_status_risk')
        batch_op.create_index(
            'ix_sla_deadlines_status_partition_due', ['status', 'partition', 'due_at'], unique=False
        )
        batch_op.create_index(
            'ix_sla_deadlines_status_partition_risk',
            ['status', 'partition', 'at_risk_at'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('sla_deadlines', schema=None) as batch_op:
        batch_op.drop_index('ix_sla_deadlines_status_partition_risk')
        batch_op.drop_index('ix_sla_deadlines_status_partition_due')
        batch_op.create_index('ix_sla_deadlines_status_risk', ['status', 'at_risk_at'], unique=False)
        batch_op.create_index('ix_sla_deadlines_status_due', ['status', 'due_at'], unique=False)
        batch_op.drop_column('partition')
