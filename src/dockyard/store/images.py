"""What uses an image of the registry: instances and snapshots (a use refuses a delete)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.store import instances
from dockyard.store.tables import SnapshotRow


def users(sess: Session, full: str, bare: str) -> list[str]:
    """Names of the instances whose image is `full` (REGISTRY/NAME:TAG) or `bare` (NAME:TAG)
    and `snapshot NAME` of the snapshots stored as `full`, unsorted."""
    found = instances.using_image(sess, [full, bare])
    found += [f"snapshot {s}" for s in sess.scalars(
        select(SnapshotRow.name).where(SnapshotRow.image == full))]
    return found
