"""Apply what an agent observed to the store and close the operations it satisfies.

A report is the agent's truth about one instance. `deleted` (after a delete, or after a failed
create that the agent rolled back) releases the ledger rows and the record in one transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dockyard.model.agent import ObservedState
from dockyard.model.health import HealthState
from dockyard.model.instance import DesiredState, InstanceState
from dockyard.server.instances import touch_shared
from dockyard.store import ledger, meta, operations, revision
from dockyard.store.events import record as record_event
from dockyard.store.tables import InstanceRow, OperationRow


def _finish(op: OperationRow, status: str, error: str | None = None,
            step: dict[str, Any] | None = None) -> None:
    op.status = status
    op.error = error
    op.steps = [*op.steps, step or {"step": status}]


# operations that journal their steps and finish themselves: a `running` report of the moved
# instance is one of their steps, not their end (server/migrate.py, server/live_migrate.py)
JOURNALLED = {"migrate", "live_migrate"}


def _satisfied(op: OperationRow, obs: ObservedState) -> bool:
    target = op.steps[0].get("target", {}) if op.steps else {}
    if target.get("state") != obs.state:
        return False
    return (obs.restart_serial >= int(target.get("restart_serial", 0))
            and obs.revision >= int(target.get("revision", 0)))


def _remove(sess: Session, row: InstanceRow, obs: ObservedState, host_name: str) -> None:
    # the revision row is locked first, as every writer that bumps it does before the instance
    # rows: `touch_shared` below locks the host's other instances, and a delete of one of them
    # holding its row while waiting for the revision would otherwise deadlock with this
    rev = revision.bump(sess)
    ledger.release_instance(sess, row.id)
    had_cores = int(row.limits.get("cores", 0)) > 0
    failed = obs.failed_create and row.desired_state != DesiredState.deleted
    for op in operations.running(sess, row.id):
        if failed:
            _finish(op, "failure", obs.message or "create failed")
        else:
            _finish(op, "success")
    if failed:
        record_event(sess, row, "create_failed", obs.message or "create failed", host_name)
    else:
        record_event(sess, row, "deleted", "instance deleted", host_name)
    host_id = row.host_id
    sess.delete(row)
    sess.flush()
    meta.put(sess, meta.NETWORKS_REVISION, str(rev))  # one peer fewer in /etc/hosts
    if had_cores and host_id:
        touch_shared(sess, host_id, rev)


def _health(sess: Session, row: InstanceRow, obs: ObservedState, host_name: str) -> None:
    """dockerd's health of a running container; a stopped or failed one has none."""
    health = obs.health if obs.state == InstanceState.running else HealthState.none
    if row.health != health:
        record_event(sess, row, "health", f"{row.health} -> {health}", host_name)
        row.health = health


def apply_report(sess: Session, row: InstanceRow, obs: ObservedState, host_name: str) -> None:
    if obs.generation != row.generation:
        return  # a stale copy's report (fencing): ignored
    if obs.state == "deleted":
        if row.desired_state == DesiredState.deleted or obs.failed_create:
            _remove(sess, row, obs, host_name)
        return
    previous = row.state
    row.container_id = obs.container_id or row.container_id
    row.message = obs.message
    if obs.state in {s.value for s in InstanceState}:
        if row.desired_state == DesiredState.deleted:
            row.state = InstanceState.deleting
        elif obs.state != InstanceState.error or row.state != InstanceState.creating:
            row.state = InstanceState(obs.state)
    if row.state != previous:
        record_event(sess, row, "state", f"{previous} -> {row.state}"
                     + (f": {obs.message}" if obs.message else ""), host_name)
    _health(sess, row, obs, host_name)
    for op in operations.running(sess, row.id):
        if op.kind in JOURNALLED:
            continue  # finished by their own modules (and their recovery), not by a report
        if _satisfied(op, obs):
            _finish(op, "success")
        elif obs.state == "error" and op.kind != "delete":
            _finish(op, "failure", obs.message or "the agent reported an error")
