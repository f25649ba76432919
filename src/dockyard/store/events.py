"""The event log: `record` (append-only), pages of the whole log (or one project's) and of one
instance's events, the times of one kind of event (OOM kills for the alert rules). (Row → API
model: `records.event_model`.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.store import rows
from dockyard.store.tables import EventRow, InstanceRow


def page(sess: Session, after: int, limit: int, *, project_id: str | None = None,
         instance_id: str | None = None) -> tuple[list[EventRow], bool]:
    """Events with id > after, oldest first, of one project and/or one instance when given;
    the bool says whether more follow."""
    return rows.after_id(sess, EventRow, after, limit,
                         {"project_id": project_id, "instance_id": instance_id})


def latest(sess: Session, limit: int, *, project_id: str | None = None,
           instance_id: str | None = None) -> list[EventRow]:
    """The newest `limit` events, newest first (of one project and/or instance when given)."""
    query = select(EventRow)
    if project_id is not None:
        query = query.where(EventRow.project_id == project_id)
    if instance_id is not None:
        query = query.where(EventRow.instance_id == instance_id)
    return list(sess.scalars(query.order_by(EventRow.id.desc()).limit(limit)))


def times_of(sess: Session, kind: str, since: datetime) -> list[tuple[str, datetime]]:
    """(instance id, time) of the instances' events of `kind` recorded since `since`."""
    return [(str(instance_id), time) for instance_id, time in sess.execute(
        select(EventRow.instance_id, EventRow.time)
        .where(EventRow.kind == kind, EventRow.time >= since,
               EventRow.instance_id.is_not(None)))]


def record(sess: Session, row: InstanceRow | None, kind: str, message: str,
           host_name: str | None = None, *, project_id: str | None = None) -> None:
    """Append an event, of the instance `row` (its project, id and name), of a project (a
    repository's alert) or of the cluster."""
    sess.add(EventRow(project_id=row.project_id if row else project_id,
                      instance_id=row.id if row else None,
                      instance_name=row.name if row else None,
                      host_name=host_name, kind=kind, message=message))
