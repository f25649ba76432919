"""Live resize: new limits checked against the host's capacity and recorded in one
transaction (cores re-reserved under the ledger's constraints, memory checked against what
the host has left, the host's version compare-and-set); the agent applies them in place.

A resize that does not fit (the host, or the project's quota of cores and memory, counted
under the project's lock) answers 409 with the reason and changes nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from dockyard.errors import Conflict, NoCapacity
from dockyard.model.instance import DesiredState, InstanceState, Limits, LimitsPatch
from dockyard.model.units import format_size
from dockyard.scheduler.cpusets import allocate_exclusive, format_cpuset
from dockyard.server.context import ServerContext
from dockyard.server.instances import (
    PLACEMENT_ATTEMPTS,
    record_event,
    start_operation,
    touch_shared,
)
from dockyard.store import ledger, quotas, records, revision
from dockyard.store.tables import HostRow, InstanceRow


def _describe(old: Limits, new: Limits) -> str:
    changes = []
    for key, value in new.model_dump().items():
        before = getattr(old, key)
        if value != before and key != "cpuset":
            changes.append(f"{key} {before} -> {value}")
    return ", ".join(changes) or "no change"


def _reserve(sess: Session, row: InstanceRow, host: HostRow, old: Limits, new: Limits) -> None:
    """Re-reserve exclusive cores and check memory; raises NoCapacity with the reason."""
    if new.cores != old.cores:
        taken = {c for c, owner in ledger.taken_cores(sess, host.id).items()
                 if owner != row.id}
        cores = allocate_exclusive(list(host.inventory.get("cores", [])), taken,
                                   set(host.reserved_cores), new.cores)
        ledger.release_cores(sess, row.id)
        ledger.reserve_cores(sess, host.id, cores, row.id)
        new.cpuset = format_cpuset(cores)
    if new.memory_bytes and new.memory_bytes != old.memory_bytes:
        total = int(host.inventory.get("memory_bytes", 0))
        others = ledger.memory_reserved(sess, host.id) - (old.memory_bytes or 0)
        if others + new.memory_bytes > total:
            raise NoCapacity(f"memory {format_size(new.memory_bytes)} does not fit on host "
                             f"{host.name}: {format_size(max(total - others, 0))} free")


def _claim(old: Limits, new: Limits) -> quotas.Claim:
    """What a resize adds to the project (growth only; shrinking always fits)."""
    return quotas.Claim(cores=max(new.cores - old.cores, 0),
                        memory_bytes=max((new.memory_bytes or 0) - (old.memory_bytes or 0), 0))


def _resize_once(ctx: ServerContext, project_id: str, ref: str, patch: LimitsPatch) -> str:
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        if row.desired_state == DesiredState.deleted or row.state == InstanceState.creating:
            raise Conflict(f"instance {row.name} is {row.state}; resize it once it is running "
                           "or stopped")
        host = sess.get(HostRow, row.host_id) if row.host_id else None
        if host is None:
            raise Conflict(f"instance {row.name} has no host")
        old = Limits.model_validate(row.limits)
        new = patch.apply(old)
        quotas.enforce(sess, project_id, _claim(old, new))
        seen = host.version
        _reserve(sess, row, host, old, new)
        ledger.commit_placement(sess, host.id, seen)
        row.limits = new.model_dump()
        rev = revision.bump(sess)
        row.revision = rev
        if new.cores != old.cores:
            touch_shared(sess, host.id, rev)
        want = "stopped" if row.desired_state == DesiredState.stopped else "running"
        op = start_operation(sess, row, "resize", state=want, revision=rev)
        record_event(sess, row, "resize", _describe(old, new), host.name)
        return op.id


def resize(ctx: ServerContext, project_id: str, ref: str, patch: LimitsPatch) -> str:
    for attempt in range(PLACEMENT_ATTEMPTS):
        try:
            op_id = _resize_once(ctx, project_id, ref, patch)
        except Conflict as exc:
            if "retry" not in exc.message or attempt == PLACEMENT_ATTEMPTS - 1:
                raise
            continue
        ctx.notifier.bump()
        return op_id
    raise AssertionError("unreachable")
