"""snapshots: images committed from instances, with their volume archives

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'snapshots',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('project_id', sa.String(length=32), nullable=False),
        sa.Column('instance_id', sa.String(length=32), nullable=True),
        sa.Column('instance_name', sa.String(length=63), nullable=False),
        sa.Column('image', sa.String(length=255), nullable=False),
        sa.Column('volumes', sa.JSON(), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'name', name='uq_snapshot_name'),
    )
    op.create_index('ix_snapshots_instance_id', 'snapshots', ['instance_id'])


def downgrade() -> None:
    op.drop_index('ix_snapshots_instance_id', table_name='snapshots')
    op.drop_table('snapshots')
