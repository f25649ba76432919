"""Operation rows: starting one, lookup, the running ones of an instance, superseding them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dockyard.model.ids import new_id
from dockyard.store.tables import InstanceRow, OperationRow


def get(sess: Session, op_id: str) -> OperationRow | None:
    return sess.get(OperationRow, op_id)


def running(sess: Session, instance_id: str) -> list[OperationRow]:
    return list(sess.scalars(select(OperationRow).where(OperationRow.instance_id == instance_id,
                                                        OperationRow.status == "running")))


def fail_running(sess: Session, instance_id: str, error: str) -> None:
    """Mark the instance's running operations failed with `error` (one UPDATE)."""
    sess.execute(update(OperationRow).where(OperationRow.instance_id == instance_id,
                                            OperationRow.status == "running")
                 .values(status="failure", error=error))


def start(sess: Session, row: InstanceRow, kind: str, **target: object) -> OperationRow:
    """A running operation of `kind` on the instance; `target` is what finishes it (the
    state, revision or restart serial a report must show; see `server/reports.py`)."""
    op = OperationRow(id=new_id(), kind=kind, project_id=row.project_id, instance_id=row.id,
                      status="running", steps=[{"step": "requested", "target": target,
                                                "at": datetime.now(UTC).isoformat()}])
    sess.add(op)
    return op


def running_of_kind(sess: Session, kind: str) -> list[OperationRow]:
    """The operations of `kind` still running (of every instance)."""
    return list(sess.scalars(select(OperationRow).where(OperationRow.kind == kind,
                                                        OperationRow.status == "running")))
