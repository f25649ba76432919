"""The global desired-state revision: bumped in the same transaction as the change it marks.

Transactions are serialized (SQLite BEGIN IMMEDIATE; FOR UPDATE on PostgreSQL), so revisions
are handed out in commit order and an agent that has seen revision N has seen every change
up to N.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.store.tables import Meta

KEY = "revision"
NETWORKS_KEY = "networks_revision"  # meta.NETWORKS_REVISION (meta imports nothing of ours)


def current(sess: Session) -> int:
    value = sess.scalar(select(Meta.value).where(Meta.key == KEY))
    return int(value) if value is not None else 0


def current_and_networks(sess: Session) -> tuple[int, int]:
    """The revision and `meta.NETWORKS_REVISION` (the last network change), in one query."""
    values = {key: value for key, value in sess.execute(select(Meta.key, Meta.value).where(
        Meta.key.in_((KEY, NETWORKS_KEY))))}
    return int(values.get(KEY) or 0), int(values.get(NETWORKS_KEY) or 0)


def bump(sess: Session) -> int:
    row = sess.scalar(select(Meta).where(Meta.key == KEY).with_for_update())
    if row is None:
        row = Meta(key=KEY, value="0")
        sess.add(row)
    row.value = str(int(row.value) + 1)
    sess.flush()
    return int(row.value)
