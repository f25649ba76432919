"""build limits of a repository: repos.memory_bytes, repos.cpus (issue #13)

Revision ID: 0013_builds2
Revises: 0012_stacks3
Create Date: 2026-12-07 08:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_builds2'
down_revision = '0013_vm'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('repos') as batch:
        batch.add_column(sa.Column('memory_bytes', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('cpus', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('repos') as batch:
        batch.drop_column('cpus')
        batch.drop_column('memory_bytes')
