"""sla deadlines: the team that answers for each deadline

Revision ID: f3a8c61d2b07
Revises: e5b17c3d9a42
Create Date: 2026-11-26 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'f3a8c61d2b07'
down_revision: str | None = 'e5b17c3d9a42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows from before answer to the clause's team (sla_monitor.domain.CLAUSE_TEAM).
    with op.batch_alter_table('sla_deadlines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sla_deadlines', schema=None) as batch_op:
        batch_op.drop_column('team')
