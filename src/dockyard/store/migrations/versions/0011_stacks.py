"""app stacks: stacks, stack_versions, stack_services, stack_replicas (issue #12)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 02:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stacks',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('project_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'name', name='uq_stack_name'))
    op.create_table(
        'stack_versions',
        sa.Column('stack_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['stack_id'], ['stacks.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('stack_id', 'version'))
    op.create_table(
        'stack_services',
        sa.Column('stack_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('replicas', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('template_hash', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['stack_id'], ['stacks.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('stack_id', 'name'))
    op.create_table(
        'stack_replicas',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('stack_id', sa.String(length=32), nullable=False),
        sa.Column('service', sa.String(length=63), nullable=False),
        sa.Column('slot', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(['stack_id'], ['stacks.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('stack_id', 'service', 'slot', name='uq_stack_replica'))
    with op.batch_alter_table('stack_replicas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stack_replicas_stack_id'), ['stack_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_stack_replicas_instance_id'), ['instance_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stack_replicas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stack_replicas_instance_id'))
        batch_op.drop_index(batch_op.f('ix_stack_replicas_stack_id'))
    op.drop_table('stack_replicas')
    op.drop_table('stack_services')
    op.drop_table('stack_versions')
    op.drop_table('stacks')
