"""builds from uploaded tar archives: repos.url nullable (a repository without url builds
uploaded archives), build_archives (the archive of a queued or running build) (#13)

Revision ID: 0015_build_uploads
Revises: 0014_drain
Create Date: 2026-12-07 19:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015_build_uploads'
down_revision = '0014_drain'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('repos') as batch:
        batch.alter_column('url', existing_type=sa.String(length=1024), nullable=True)
    op.create_table('build_archives',
                    sa.Column('build_id', sa.String(length=32), nullable=False),
                    sa.Column('sha256', sa.String(length=64), nullable=False),
                    sa.Column('size', sa.BigInteger(), nullable=False),
                    sa.Column('data', sa.LargeBinary(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('build_id'))


def downgrade() -> None:
    op.drop_table('build_archives')
    with op.batch_alter_table('repos') as batch:
        batch.alter_column('url', existing_type=sa.String(length=1024), nullable=False)
