"""repositories and builds: repos, builds, build_logs, hook_deliveries (issue #13)

Revision ID: 0012_builds
Revises: 0011
Create Date: 2026-12-07 05:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_builds'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'repos',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('project_id', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=1024), nullable=False),
        sa.Column('branch', sa.String(length=200), nullable=False),
        sa.Column('dockerfile', sa.String(length=255), nullable=False),
        sa.Column('context', sa.String(length=255), nullable=False),
        sa.Column('image', sa.String(length=255), nullable=False),
        sa.Column('deploy', sa.JSON(), nullable=False),
        sa.Column('secret_enc', sa.Text(), nullable=False),
        sa.Column('credentials_enc', sa.Text(), nullable=True),
        sa.Column('timeout', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'name', name='uq_repo_name'))
    op.create_table(
        'builds',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('repo_id', sa.String(length=32), nullable=False),
        sa.Column('project_id', sa.String(length=32), nullable=False),
        sa.Column('ref', sa.String(length=255), nullable=False),
        sa.Column('branch', sa.String(length=200), nullable=True),
        sa.Column('commit', sa.String(length=64), nullable=True),
        sa.Column('author', sa.String(length=255), nullable=True),
        sa.Column('message', sa.String(length=1024), nullable=True),
        sa.Column('trigger', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('host', sa.String(length=63), nullable=True),
        sa.Column('image', sa.String(length=512), nullable=True),
        sa.Column('digest', sa.String(length=128), nullable=True),
        sa.Column('step', sa.String(length=1024), nullable=True),
        sa.Column('error', sa.String(length=2048), nullable=True),
        sa.Column('operation_id', sa.String(length=32), nullable=True),
        sa.Column('rollout', sa.String(length=2048), nullable=True),
        sa.Column('cancel_requested', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['repo_id'], ['repos.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('seq'))
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_builds_repo_id'), ['repo_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_builds_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_builds_state'), ['state'], unique=False)
    op.create_table(
        'build_logs',
        sa.Column('build_id', sa.String(length=32), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['build_id'], ['builds.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('build_id', 'line_no'))
    op.create_table(
        'hook_deliveries',
        sa.Column('repo_id', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=160), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['repo_id'], ['repos.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('repo_id', 'key'))


def downgrade() -> None:
    op.drop_table('hook_deliveries')
    op.drop_table('build_logs')
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_builds_state'))
        batch_op.drop_index(batch_op.f('ix_builds_project_id'))
        batch_op.drop_index(batch_op.f('ix_builds_repo_id'))
    op.drop_table('builds')
    op.drop_table('repos')
