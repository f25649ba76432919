"""Cold migration, as an operation whose steps are journalled (DESIGN.md "Operations").

    begin: checks (running, not moving, target up/other/room: 409 with the scheduler's
           reasons) ─▶ target cores reserved (host version CAS), op `migrate` recorded
    volumes_copied   target agent pulls each named volume from the source agent (one-time
                     token from the server) while the instance runs
    stopped          desired stopped on the source; its agent stops it and reports
    committed        source agent: docker commit + push REGISTRY/migrate/…:g<gen+1>
    delta_copied     second pass: entries changed since the first pass began, then pruned
    switched         ONE transaction: host_id = target, generation + 1, image = the commit,
                     source cores released, volumes re-bound ─▶ the target's agent creates it
                     with the same IP/MAC/hostname/limits (plumb sends a gratuitous ARP)
    running          the target reported running at the new generation
    source_removed   the source copy (and its volumes) removed; downtime recorded as an event
Any failure ─▶ rollback: before `switched` the source simply runs again (desired running);
after it, the instance is switched back to the source with generation + 1 more (the stale
source container is set aside and remade from the commit, its volumes still there). A server
that died mid-way calls `recover` at start: the same rollback, or finishing the clean-up when
the target already runs.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from dockyard import faults
from dockyard.errors import BackendError, Conflict, DockyardError, NotFound
from dockyard.model.instance import DesiredState, InstanceState, Limits
from dockyard.model.volume import docker_volume_name
from dockyard.scheduler import PlacementRequest
from dockyard.scheduler.cpusets import parse_cpuset
from dockyard.server import placement
from dockyard.server.agent_proxy import AgentClient, host_target
from dockyard.server.context import ServerContext
from dockyard.server.instances import touch_shared
from dockyard.server.snapshots import named_volumes
from dockyard.store import events, hosts, ledger, operations, records, revision
from dockyard.store import instances as instance_rows
from dockyard.store import volumes as volume_rows
from dockyard.store.tables import HostRow, InstanceRow

log = logging.getLogger(__name__)
STATE_TIMEOUT = 90.0  # seconds to wait for an agent's report of a stop or a start
DELTA_MARGIN = 2.0  # seconds: the delta pass re-sends what changed a little before pass one


def request_for(row: InstanceRow, host: str | None) -> PlacementRequest:
    """What the instance of `row` needs, under its own placement options."""
    return placement.request_for(Limits.model_validate(row.limits), row.network_id,
                                 row.options, host, vm=row.type == "vm")


def choose_target(ctx: ServerContext, sess: Session, row: InstanceRow,
                  to: str | None) -> tuple[HostRow, list[int]]:
    """The target host and its cores, reserved (version CAS): `to`, or the scheduler's best
    host but the instance's own; 409 with the scheduler's reasons otherwise."""
    if to is not None:
        pinned = hosts.by_name(sess, to)
        if pinned is None:
            raise NotFound(f"host {to!r} not found")
        if pinned.id == row.host_id:
            raise Conflict(f"instance {row.name} already runs on {to}")
    plan = placement.reserve(sess, ctx.settings, request_for(row, to), row.id,
                             leave=_host_name(sess, row.host_id))
    host = hosts.get(sess, plan.host_id)
    assert host is not None
    return host, list(plan.cores)


def _host_name(sess: Session, host_id: str | None) -> str:
    host = hosts.get(sess, host_id)
    return host.name if host else ""


def _begin(ctx: ServerContext, project_id: str, ref: str,
           to: str | None) -> tuple[str, str]:
    return placement.placing(ctx.db, lambda sess: _begin_in(ctx, sess, project_id, ref, to))


def _begin_in(ctx: ServerContext, sess: Session, project_id: str, ref: str,
              to: str | None) -> tuple[str, str]:
    row = records.instance_by_ref(sess, project_id, ref)
    if row.state != InstanceState.running or row.desired_state != DesiredState.running:
        raise Conflict(f"instance {row.name} is {row.state}: only a running instance "
                       "migrates")
    return start_move(ctx, sess, row, to, "migrate", "migration")


def start_move(ctx: ServerContext, sess: Session, row: InstanceRow, to: str | None, kind: str,
               what: str) -> tuple[str, str]:
    """The common start of a cold or live move (`kind`): not moving already, the target's
    cores reserved, the operation journalled with its plan; returns (operation, instance)."""
    if row.options.get("migrating"):
        raise Conflict(f"instance {row.name} is already being migrated")
    source = host_target(ctx, sess, row.host_id, f"instance {row.name}")
    target, cores = choose_target(ctx, sess, row, to)
    op = operations.start(sess, row, kind, state="running", source=source.name,
                          target=target.name, source_id=row.host_id, target_id=target.id,
                          cores=cores, generation=row.generation)
    row.options = {**row.options, "migrating": op.id}
    events.record(sess, row, "migrate", f"{what} {source.name} -> {target.name} begins")
    return op.id, row.id


def journal(ctx: ServerContext, op_id: str, name: str, data: dict[str, Any]) -> None:
    """Step `name` of a cold or live move recorded as done, with its data."""
    with ctx.db.session() as sess:
        op = operations.get(sess, op_id)
        assert op is not None
        op.steps = [*op.steps, {"step": name, "at": datetime.now(UTC).isoformat(), **data}]


def step(ctx: ServerContext, op_id: str, name: str, **data: Any) -> None:
    journal(ctx, op_id, name, data)
    faults.point(f"server.migrate.{name}")


def _targets(ctx: ServerContext, op_id: str) -> tuple[dict[str, Any], AgentClient, AgentClient]:
    with ctx.db.session() as sess:
        op = operations.get(sess, op_id)
        assert op is not None
        plan = dict(op.steps[0]["target"])
        ends = [hosts.get(sess, plan[k]) for k in ("source_id", "target_id")]
        src, dst = (AgentClient(h.name, h.api_url, h.api_secret, ctx.agents.verify) if h else
                    AgentClient("?", "", "") for h in ends)
        return plan, src, dst


def _volumes(ctx: ServerContext, instance_id: str) -> list[str]:
    with ctx.db.session() as sess:
        row = instance_rows.get(sess, instance_id)
        return [name for _, name in named_volumes(sess, row)] if row else []


def migrate(ctx: ServerContext, project_id: str, ref: str, to: str | None) -> dict[str, Any]:
    op_id, instance_id = _begin(ctx, project_id, ref, to)
    try:
        downtime = _run(ctx, op_id, instance_id)
    except DockyardError as exc:
        log.warning("migration %s failed: %s", op_id, exc.message)
        rollback(ctx, op_id, instance_id, exc.message)
        raise BackendError(f"migration failed, the instance runs on its source host "
                           f"again: {exc.message}") from exc
    plan, _, _ = _targets(ctx, op_id)
    return {"operation": op_id, "source": plan["source"], "target": plan["target"],
            "downtime": round(downtime, 3)}


def _run(ctx: ServerContext, op_id: str, instance_id: str) -> float:
    plan, src, dst = _targets(ctx, op_id)
    volumes = _volumes(ctx, instance_id)
    dst.pull_image(_image(ctx, instance_id))  # the base layers, before the downtime
    step(ctx, op_id, "prepared")
    first = time.time()
    for name in volumes:
        first = min(first, dst.pull_volume(name, src, None, prune=False))
    step(ctx, op_id, "volumes_copied", volumes=volumes)
    stopped_at = time.monotonic()
    set_desired(ctx, instance_id, DesiredState.stopped)
    wait_state(ctx, instance_id, InstanceState.stopped, int(plan["generation"]))
    step(ctx, op_id, "stopped")
    image = _commit_image(ctx, instance_id, src, int(plan["generation"]) + 1)
    step(ctx, op_id, "committed", image=image)
    for name in volumes:
        dst.pull_volume(name, src, first - DELTA_MARGIN, prune=True)
    step(ctx, op_id, "delta_copied")
    switch(ctx, instance_id, plan, image, to_target=True)
    step(ctx, op_id, "switched")
    wait_state(ctx, instance_id, InstanceState.running, int(plan["generation"]) + 1)
    downtime = time.monotonic() - stopped_at
    step(ctx, op_id, "running", downtime=round(downtime, 3))
    _remove_source(src, instance_id, int(plan["generation"]), volumes)
    finish(ctx, op_id, instance_id, "success", None,
           f"migrated {plan['source']} -> {plan['target']}, downtime {downtime:.2f} s")
    return downtime


def _image(ctx: ServerContext, instance_id: str) -> str:
    with ctx.db.session() as sess:
        row = instance_rows.get(sess, instance_id)
        return row.image if row else ""


def _commit_image(ctx: ServerContext, instance_id: str, src: AgentClient, gen: int) -> str:
    with ctx.db.session() as sess:
        row = instance_rows.get(sess, instance_id)
        assert row is not None
        target = f"{ctx.registry.address}/migrate/{row.project_id}-{row.name}:g{gen}"
    return src.commit(instance_id, target, pause=False)


def _remove_source(src: AgentClient, instance_id: str, generation: int,
                   volumes: list[str]) -> None:
    try:
        src.discard(instance_id, generation)
        for name in volumes:
            src.remove_volume(name)
    except DockyardError as exc:  # the orphan scan stops it; never fatal after the switch
        log.warning("migration: source copy of %s left: %s", instance_id, exc.message)


def set_desired(ctx: ServerContext, instance_id: str, desired: DesiredState) -> None:
    def work(sess: Session) -> None:
        row = instance_rows.get(sess, instance_id)
        if row is None:
            raise NotFound(f"instance {instance_id} vanished")
        row.revision = revision.bump(sess)  # the revision row first (one lock order)
        row.desired_state = desired
        if desired == DesiredState.stopped:
            row.state = InstanceState.stopping
        elif row.state != InstanceState.running:  # a rollback before the stop: it still runs
            row.state = InstanceState.starting

    ctx.db.transact(work)
    ctx.notifier.bump()


def wait_state(ctx: ServerContext, instance_id: str, state: InstanceState,
               generation: int, timeout: float = STATE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with ctx.db.session() as sess:
            row = instance_rows.get(sess, instance_id)
            if row is None:
                raise NotFound(f"instance {instance_id} vanished")
            if row.state == state and row.generation == generation:
                return
            if row.state == InstanceState.error:
                raise BackendError(f"instance {row.name}: {row.message or 'error'}")
        if time.monotonic() > deadline:
            raise BackendError(f"no {state} report within {timeout:.0f} s")
        time.sleep(0.05)


def switch(ctx: ServerContext, instance_id: str, plan: dict[str, Any], image: str | None,
           to_target: bool, generation: int | None = None) -> int:
    """Host and generation change in one transaction, cores and volumes follow. The
    generation goes up by one, or to `generation` (a live move back to the source's own
    checkpointed container: that copy is wanted again, not fenced). Returns the revision of
    the change (the host left refuses desired states older than it: `discard`)."""
    new, old = ((plan["target_id"], plan["source_id"]) if to_target
                else (plan["source_id"], plan["target_id"]))
    with ctx.db.session() as sess:
        row = instance_rows.get(sess, instance_id)
        assert row is not None
        row.host_id = new
        row.generation = row.generation + 1 if generation is None else generation
        row.image = image or row.image
        row.desired_state, row.state = DesiredState.running, InstanceState.starting
        ledger.release_cores_on(sess, row.id, old)
        if not to_target:
            ledger.reserve_cores(sess, new, _source_cores(row), row.id)
        for vol in volume_rows.on_host(sess, old):
            if docker_volume_name(vol.id) in [n for _, n in named_volumes(sess, row)]:
                vol.host_id = new
        rev = revision.bump(sess)
        row.revision = rev
        if int(row.limits.get("cores", 0)):
            touch_shared(sess, new, rev)
            touch_shared(sess, old, rev)
    ctx.notifier.bump()
    return rev


def _source_cores(row: InstanceRow) -> list[int]:
    cpuset = str(row.limits.get("cpuset") or "")
    if not int(row.limits.get("cores", 0)) or not cpuset:
        return []
    return parse_cpuset(cpuset)


def finish(ctx: ServerContext, op_id: str, instance_id: str, status: str, error: str | None,
           message: str) -> None:
    with ctx.db.session() as sess:
        op = operations.get(sess, op_id)
        row = instance_rows.get(sess, instance_id)
        if op is not None:
            op.status, op.error = status, error
            op.steps = [*op.steps, {"step": status, "at": datetime.now(UTC).isoformat()}]
        if row is not None:
            row.options = {k: v for k, v in row.options.items() if k != "migrating"}
            events.record(sess, row, "migrated" if status == "success" else "migrate_failed",
                          message)
    ctx.notifier.bump()


def rollback(ctx: ServerContext, op_id: str, instance_id: str, reason: str) -> None:
    """Back to the source: the instance runs there as before (see the module docstring)."""
    plan, src, dst = _targets(ctx, op_id)
    with ctx.db.session() as sess:
        op = operations.get(sess, op_id)
        done = {s.get("step") for s in op.steps} if op else set()
        row = instance_rows.get(sess, instance_id)
        generation = row.generation if row else 0
    began = time.monotonic()
    if "switched" in done:
        # the target may be making its copy right now (it saw the switch): the discard waits
        # for that sync, and a watch reply still on its way from before this switch back
        # cannot bring the copy back (the revision); its volumes are free after that
        rev = switch(ctx, instance_id, plan, None, to_target=False)
        _best_effort(lambda: dst.discard(instance_id, generation, rev))
    else:
        with ctx.db.session() as sess:
            ledger.release_cores_on(sess, instance_id, plan["target_id"])
        set_desired(ctx, instance_id, DesiredState.running)
    for name in _volumes(ctx, instance_id):
        _best_effort(lambda n=name: dst.remove_volume(n))
    log.info("migration %s rollback: back on %s, the target's copy and volumes removed "
             "(%.2f s)", op_id, plan["source"], time.monotonic() - began)
    finish(ctx, op_id, instance_id, "failure", reason,
           f"migration to {plan['target']} failed ({reason}); back on {plan['source']}")
    _best_effort(lambda: wait_state(ctx, instance_id, InstanceState.running,
                                    _generation(ctx, instance_id), timeout=60.0))
    log.info("migration %s rollback: done (%.2f s)", op_id, time.monotonic() - began)


def _generation(ctx: ServerContext, instance_id: str) -> int:
    with ctx.db.session() as sess:
        row = instance_rows.get(sess, instance_id)
        return row.generation if row else 0


def _best_effort(call: Any) -> None:
    try:
        call()
    except DockyardError as exc:
        log.warning("migration clean-up: %s", exc.message)


def left_running(ctx: ServerContext, kind: str) -> list[tuple[str, str, set[str]]]:
    """The operations of `kind` still running (at server start: left by a restart), as
    (operation, instance, the steps done)."""
    with ctx.db.session() as sess:
        return [(op.id, op.instance_id, {str(s.get("step")) for s in op.steps})
                for op in operations.running_of_kind(sess, kind)
                if op.instance_id is not None]


def recover(ctx: ServerContext) -> None:
    """At server start: every migration left running is rolled back, or finished when its
    instance already runs on the target (the switch committed). Live migrations are
    `live_migrate.recover`'s (the server's start-up runs both; this module does not import
    that one, which builds on it)."""
    for op_id, instance_id, done in left_running(ctx, "migrate"):
        try:
            if "running" in done:
                plan, src, _ = _targets(ctx, op_id)
                _remove_source(src, instance_id, int(plan["generation"]),
                               _volumes(ctx, instance_id))
                finish(ctx, op_id, instance_id, "success", None, "migration finished after a "
                       "server restart")
            else:
                rollback(ctx, op_id, instance_id, "the server restarted mid-migration")
        except Exception as exc:  # one migration's recovery must not keep the others from running
            log.exception("recovery of migration %s failed", op_id)
            mark_stuck(ctx, op_id, instance_id, exc)


def mark_stuck(ctx: ServerContext, op_id: str, instance_id: str, exc: Exception) -> None:
    """A recovery that failed: the operation ends `failure` with the error, the instance
    leaves `migrating` for `error` (stop, start or delete repair it) and an event
    `migrate_stuck` says so, instead of an operation `running` and a migrating flag forever."""
    reason = exc.message if isinstance(exc, DockyardError) else f"{type(exc).__name__}: {exc}"
    error = f"recovery after a server restart failed: {reason}"[:1000]
    try:
        with ctx.db.session() as sess:
            op = operations.get(sess, op_id)
            row = instance_rows.get(sess, instance_id)
            if op is not None:
                op.status, op.error = "failure", error
                op.steps = [*op.steps, {"step": "stuck", "error": error,
                                        "at": datetime.now(UTC).isoformat()}]
            if row is not None:
                row.options = {k: v for k, v in row.options.items() if k != "migrating"}
                row.state, row.message = InstanceState.error, error
                row.revision = revision.bump(sess)
                events.record(sess, row, "migrate_stuck", f"operation {op_id}: {error}; "
                              "stop and start the instance (or delete it) to repair it")
        ctx.notifier.bump()
    except Exception:  # the store itself is failing: the log is all that is left
        log.exception("could not record the failed recovery of %s", op_id)
