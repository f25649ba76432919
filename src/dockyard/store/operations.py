"""Operation rows: lookup, the running ones of an instance, superseding them."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dockyard.store.tables import OperationRow


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
