"""Volume rows: pages, creation and deletion. (Lookups by reference, the instances that mount
a volume and row → API model: `records.py`; quotas: `quotas.py`.)"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.errors import Conflict, RetryableConflict
from dockyard.model.ids import new_id
from dockyard.store import quotas, records, rows
from dockyard.store.tables import VolumeRow


def create(sess: Session, project_id: str, name: str) -> VolumeRow:
    """A new volume, bound to no host yet; 409 when the project has one of that name (also
    when a concurrent create won the UNIQUE(project_id, name) race), 403 over the quota."""
    taken = Conflict(f"a volume named {name!r} already exists")
    if sess.scalar(select(VolumeRow.id).where(VolumeRow.project_id == project_id,
                                              VolumeRow.name == name)):
        raise taken
    quotas.enforce(sess, project_id, quotas.Claim(volumes=1))
    return rows.insert_unique(sess, VolumeRow(id=new_id(), name=name, project_id=project_id,
                                              host_id=None), taken)


def page(sess: Session, project_id: str, after: str,
         limit: int) -> tuple[list[VolumeRow], bool]:
    """The project's volumes named after `after`, by name; the bool: more follow."""
    return rows.by_name(sess, VolumeRow, project_id, after, limit)


def locked(sess: Session, project_id: str, ref: str) -> VolumeRow:
    """The volume by name or id, row-locked (FOR UPDATE): serializes a deletion with the
    launches that would mount it."""
    row = sess.scalar(select(VolumeRow).where(VolumeRow.id == records.volume_by_ref(
        sess, project_id, ref).id).with_for_update())
    assert row is not None
    return row


def delete(sess: Session, row: VolumeRow) -> None:
    """Delete the row now (flushed): whatever fails later in the transaction brings it
    back."""
    sess.delete(row)
    sess.flush()


def by_name(sess: Session, project_id: str, name: str) -> VolumeRow | None:
    return sess.scalar(select(VolumeRow).where(VolumeRow.project_id == project_id,
                                               VolumeRow.name == name))


def for_launch(sess: Session, project_id: str, name: str) -> VolumeRow | None:
    """The project's volume `name`, row-locked (FOR UPDATE): a launch that mounts it
    serializes with its deletion (`locked`)."""
    return sess.scalar(select(VolumeRow).where(VolumeRow.project_id == project_id,
                                               VolumeRow.name == name).with_for_update())


def create_bound(sess: Session, project_id: str, name: str, host_id: str) -> VolumeRow:
    """A new volume bound to `host_id` (a launch named a volume the project does not have:
    created, as docker does), in a savepoint; a concurrent create of the same name won the
    UNIQUE(project_id, name) race: `RetryableConflict` (the launch is placed again)."""
    row = VolumeRow(id=new_id(), name=name, project_id=project_id, host_id=host_id)
    try:
        with sess.begin_nested():
            sess.add(row)
    except IntegrityError as exc:
        raise RetryableConflict(f"volume {name} was created concurrently; retry") from exc
    return row


def on_host(sess: Session, host_id: str) -> list[VolumeRow]:
    return list(sess.scalars(select(VolumeRow).where(VolumeRow.host_id == host_id)))
