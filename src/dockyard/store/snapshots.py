"""Instance snapshot rows: the latest of an instance (an evacuation restores from it). (What
uses a snapshot's image: `images.py`.)"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.store.tables import SnapshotRow


def latest_of(sess: Session, instance_id: str) -> SnapshotRow | None:
    return sess.scalar(select(SnapshotRow).where(SnapshotRow.instance_id == instance_id)
                       .order_by(SnapshotRow.created_at.desc()).limit(1))
