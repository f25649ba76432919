"""app stacks: when each service's last rollout batch ran, so an update's `delay` holds
across a server restart (#12)

Revision ID: 0013_stacks4
Revises: 0012_stacks3
Create Date: 2026-12-07 09:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_stacks4'
down_revision = '0012_stacks3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stack_services', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_batch_at', sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stack_services', schema=None) as batch_op:
        batch_op.drop_column('last_batch_at')
