"""hosts.last_heartbeat indexed: the placement cache reads the down hosts and the oldest live
heartbeat once a second (server/placement._Liveness), a scan of every host without it
(5 ms at 10,000 hosts, on the launch that paid it) (#16)

Revision ID: 0016_heartbeat_index
Revises: 0015_build_uploads
Create Date: 2026-12-07 21:40:00
"""
from __future__ import annotations

from alembic import op

revision = '0016_heartbeat_index'
down_revision = '0015_build_uploads'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_hosts_last_heartbeat', 'hosts', ['last_heartbeat'])


def downgrade() -> None:
    op.drop_index('ix_hosts_last_heartbeat', 'hosts')
