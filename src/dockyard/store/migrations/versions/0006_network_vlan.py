"""networks.vlan: the 802.1Q tag of a network on the uplink trunk (unique when set)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vlan', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint('uq_networks_vlan', ['vlan'])


def downgrade() -> None:
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_constraint('uq_networks_vlan', type_='unique')
        batch_op.drop_column('vlan')
