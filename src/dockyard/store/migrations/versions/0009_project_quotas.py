"""project_quotas (limits per project) and networks.shared (`default` is shared)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'project_quotas',
        sa.Column('project_id', sa.String(length=32), nullable=False),
        sa.Column('instances', sa.Integer(), nullable=True),
        sa.Column('cores', sa.Integer(), nullable=True),
        sa.Column('memory_bytes', sa.BigInteger(), nullable=True),
        sa.Column('volumes', sa.Integer(), nullable=True),
        sa.Column('snapshots', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id']),
        sa.PrimaryKeyConstraint('project_id'),
    )
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shared', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.execute(sa.text("UPDATE networks SET shared = true WHERE name = 'default'"))


def downgrade() -> None:
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_column('shared')
    op.drop_table('project_quotas')
