"""app stacks: a replica is drained from the HTTP entrance before it is stopped —
stack_replicas.draining_since, and entrance_acks (what each entrance host runs) (#12)

Revision ID: 0014_drain
Revises: 0013_builds2
Create Date: 2026-12-07 12:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014_drain'
down_revision = '0013_builds2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stack_replicas') as batch:
        batch.add_column(sa.Column('draining_since', sa.DateTime(timezone=True),
                                   nullable=True))
    op.create_table('entrance_acks',
                    sa.Column('host_name', sa.String(length=63), nullable=False),
                    sa.Column('digest', sa.String(length=64), nullable=False),
                    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('host_name'))


def downgrade() -> None:
    op.drop_table('entrance_acks')
    with op.batch_alter_table('stack_replicas') as batch:
        batch.drop_column('draining_since')
