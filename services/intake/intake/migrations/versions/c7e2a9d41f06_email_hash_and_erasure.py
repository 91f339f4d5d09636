"""email hash and erasure mark on leads (privacy.erased)

Revision ID: c7e2a9d41f06
Revises: b285742b913d
Create Date: 2026-11-26 03:50:00.000000
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c7e2a9d41f06'
down_revision: str | None = 'b285742b913d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_leads_email_hash'), ['email_hash'], unique=False)

    # Existing leads get their hash so that an erasure finds them too. The formula is frozen
    # here on purpose (sha256 of the trimmed, lower-cased email), like privacy.erased's.
    conn = op.get_bind()
    leads = sa.table('leads', sa.column('id', sa.String), sa.column('email', sa.String),
                     sa.column('email_hash', sa.String))
    rows = conn.execute(sa.select(leads.c.id, leads.c.email).where(leads.c.email.is_not(None)))
    for lead_id, email in rows.all():
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        conn.execute(leads.update().where(leads.c.id == lead_id).values(email_hash=digest))


def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_email_hash'))
        batch_op.drop_column('erased_at')
        batch_op.drop_column('email_hash')
