"""collector samples

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 07:56:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('samples',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('host_id', sa.String(length=32), nullable=False),
    sa.Column('instance_id', sa.String(length=32), nullable=True),
    sa.Column('resolution', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_samples_time'), ['time'], unique=False)
        batch_op.create_index(batch_op.f('ix_samples_host_id'), ['host_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_samples_instance_id'), ['instance_id'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('samples')
