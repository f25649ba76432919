"""Live resize: the new limits placed on the instance's own host by the one placement step
(`placement.reserve` with a `Resident`: the same filters and overcommit ratios as a launch,
cores re-reserved under the ledger's constraints, the host's version compare-and-set) and
recorded in one transaction; the agent applies them in place.

A resize that does not fit (the host, or the project's quota of cores and memory, counted
under the project's lock) answers 409 with the reason and changes nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from dockyard.errors import Conflict, InvalidRequest
from dockyard.model.instance import DesiredState, InstanceState, Limits, LimitsPatch
from dockyard.scheduler.cpusets import format_cpuset
from dockyard.server import placement
from dockyard.server.context import ServerContext
from dockyard.server.instances import touch_shared
from dockyard.store import events, hosts, operations, quotas, records, revision


def _describe(old: Limits, new: Limits) -> str:
    changes = []
    for key, value in new.model_dump().items():
        before = getattr(old, key)
        if value != before and key != "cpuset":
            changes.append(f"{key} {before} -> {value}")
    return ", ".join(changes) or "no change"


def _claim(old: Limits, new: Limits) -> quotas.Claim:
    """What a resize adds to the project (growth only; shrinking always fits)."""
    return quotas.Claim(cores=max(new.cores - old.cores, 0),
                        memory_bytes=max((new.memory_bytes or 0) - (old.memory_bytes or 0), 0))


def _resize(ctx: ServerContext, sess: Session, project_id: str, ref: str,
            patch: LimitsPatch) -> str:
    row = records.instance_by_ref(sess, project_id, ref)
    if row.desired_state == DesiredState.deleted or row.state == InstanceState.creating:
        raise Conflict(f"instance {row.name} is {row.state}; resize it once it is running "
                       "or stopped")
    host = hosts.get(sess, row.host_id)
    if host is None:
        raise Conflict(f"instance {row.name} has no host")
    old = Limits.model_validate(row.limits)
    new = patch.apply(old)
    if row.type == "vm" and new.egress_bps is not None:
        raise InvalidRequest("egress limits are not supported on VMs yet (--ingress is)")
    quotas.enforce(sess, project_id, _claim(old, new))
    # no placement options: constraints and anti-affinity chose the host, which stays
    plan = placement.reserve(
        sess, ctx.settings, placement.request_for(new, row.network_id, {},
                                                vm=row.type == "vm"), row.id,
        resident=placement.Resident(row.id, host.id, old))
    if new.cores != old.cores:
        new.cpuset = format_cpuset(plan.cores)
    row.limits = new.model_dump()
    rev = revision.bump(sess)
    row.revision = rev
    if new.cores != old.cores:
        touch_shared(sess, host.id, rev)
    want = "stopped" if row.desired_state == DesiredState.stopped else "running"
    op = operations.start(sess, row, "resize", state=want, revision=rev)
    events.record(sess, row, "resize", _describe(old, new), host.name)
    return op.id


def resize(ctx: ServerContext, project_id: str, ref: str, patch: LimitsPatch) -> str:
    op_id = placement.placing(ctx.db, lambda sess: _resize(ctx, sess, project_id, ref, patch))
    ctx.notifier.bump()
    return op_id
