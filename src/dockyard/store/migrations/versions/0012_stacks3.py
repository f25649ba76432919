"""app stacks, health and rollouts: instances.health; a stack's rollout status and its
convergence lease; a note per version; per replica its template, start and restarts (#12)

Revision ID: 0012_stacks3
Revises: 0012_builds
Create Date: 2026-12-07 05:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_stacks3'
down_revision = '0012_builds'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('health', sa.String(length=16), nullable=False,
                                      server_default='none'))
    with op.batch_alter_table('stacks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False,
                                      server_default='converged'))
        batch_op.add_column(sa.Column('status_reason', sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('stack_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.String(length=255), nullable=False,
                                      server_default=''))
    with op.batch_alter_table('stack_replicas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('restarts', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('stack_replicas', schema=None) as batch_op:
        batch_op.drop_column('restarts')
        batch_op.drop_column('started_at')
        batch_op.drop_column('template_hash')
    with op.batch_alter_table('stack_versions', schema=None) as batch_op:
        batch_op.drop_column('note')
    with op.batch_alter_table('stacks', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')
        batch_op.drop_column('status_reason')
        batch_op.drop_column('status')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('health')
