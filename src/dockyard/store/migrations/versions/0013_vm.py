"""instances.type: container or vm (issue #15)

Revision ID: 0013_vm
Revises: 0013_stacks4
Create Date: 2026-12-07 05:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_vm'
down_revision = '0013_stacks4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('type', sa.String(length=16), nullable=False,
                                   server_default='container'))


def downgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('type')
