"""Live migration with CRIU: a preflight that names every obstacle, the move, the fallback.

    check       both agents report HostFacts (agent/live.py), the scheduler judges the
                target's room; model/live.py turns them into named failures with fixes
    move        an operation `live_migrate`, journalled like the cold one (server/migrate.py):
      prepared        target pulls the base image; volumes copied while the instance runs;
                      overlay2 on both hosts: the target creates the container (generation
                      + 1) now, before the downtime
      checkpointed    source agent: hold, unplumb eth0, `docker checkpoint` (exit)  ◀ downtime
      committed       overlay2: nothing (the writable layer travels as it is, and is
                      committed on the target after the downtime: image_kept); else the
                      stopped container is committed and pushed
      delta_copied    volumes: what changed since pass one (the process is frozen)
      restored        target agent: fetch the checkpoint and the writable layer from the
                      source agent (one-time token), `docker start --checkpoint`, plumb
                      eth0 with the same IP/MAC, gratuitous ARP                ▶ downtime ends
                      (these four are journalled together once restored: a journal write
                      costs milliseconds of downtime each)
      switched        host, generation, image in one transaction (server/migrate.switch)
      running         the target reported it; the source copy, volumes, checkpoint removed
    Failure before `switched`: the target's copy goes and the source resumes from its own
    checkpoint (the same processes), else starts plainly. After it: as the cold migration.
    fallback    `--live --fallback`: a failed preflight moves the instance cold, and says why.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dockyard import faults
from dockyard.errors import BackendError, Conflict, DockyardError, NotFound
from dockyard.model.instance import InstanceState
from dockyard.model.live import CriuFacts, HostFacts, PreflightReport, evaluate, summary
from dockyard.scheduler import explain
from dockyard.server import migrate as cold
from dockyard.server import placement
from dockyard.server.agent_proxy import AgentClient, host_target
from dockyard.server.context import ServerContext
from dockyard.server.feed import desired_instance, desired_network, peer_map
from dockyard.server.peers import by_ip
from dockyard.server.placement import cluster_view
from dockyard.store import records
from dockyard.store.events import record as record_event
from dockyard.store.tables import (
    CoreAllocationRow,
    HostRow,
    InstanceRow,
    NetworkRow,
    OperationRow,
)

log = logging.getLogger(__name__)
RECOVERY_WAIT = 30.0  # at a restart after the switch: how long the target may take to report
FACTS_TIMEOUT = 90.0  # `criu check` may take a while on a loaded host


# ------------------------------------------------------------------------------ preflight


def host_facts(host: AgentClient, instance_id: str | None) -> HostFacts:
    try:
        raw = host.call("GET", "/v1/live/facts", timeout=FACTS_TIMEOUT,
                        params={"instance_id": instance_id} if instance_id else {})
        return HostFacts.model_validate(raw)
    except DockyardError as exc:
        return HostFacts(host=host.name, criu=CriuFacts(path="?"), checkpoint=False,
                         error=exc.message)


def _capacity(ctx: ServerContext, row: InstanceRow, to: str | None) -> tuple[str, str | None]:
    """The target (given or the scheduler's best other host) and why it does not fit."""
    with ctx.db.session() as sess:
        view, _ = cluster_view(sess, ctx.settings)
        own = cold._host_name(sess, row.host_id)
        if to is not None:
            if to == own:
                raise Conflict(f"instance {row.name} already runs on {to}")
            verdicts = [v for v in explain(cold.request_for(row, to), view) if v.name == to]
            if not verdicts:
                raise NotFound(f"host {to!r} not found")
            return to, verdicts[0].reason
        request = cold.request_for(row, None)
        verdicts = [v for v in explain(request, view) if v.name != own]
        fits = [v for v in verdicts if v.reason is None]
        if fits:
            return max(fits, key=lambda v: v.score or 0.0).name, None
        if not verdicts:
            return "?", "the cluster has no other host"
        return verdicts[0].name, "; ".join(f"{v.name}: {v.reason}" for v in verdicts)


def _target(ctx: ServerContext, name: str) -> AgentClient:
    with ctx.db.session() as sess:
        host = sess.scalar(select(HostRow).where(HostRow.name == name))
        return host_target(ctx, sess, host.id if host else None, f"host {name}")


def check(ctx: ServerContext, project_id: str, ref: str, to: str | None) -> PreflightReport:
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        sess.expunge(row)
        source = host_target(ctx, sess, row.host_id, f"instance {row.name}")
    target_name, capacity = _capacity(ctx, row, to)
    try:
        target: AgentClient | None = _target(ctx, target_name)
    except DockyardError:
        target = None
    with ThreadPoolExecutor(2) as pool:
        src_f = pool.submit(host_facts, source, row.id)
        dst_f = pool.submit(host_facts, target, None) if target else None
        src = src_f.result()
        dst = dst_f.result() if dst_f else HostFacts(
            host=target_name, criu=CriuFacts(path="?"), checkpoint=False,
            error="the host is not up")
    failures = evaluate(src, dst, capacity)
    return PreflightReport(instance=row.name, source=source.name, target=target_name,
                           ok=not failures, failures=failures, facts=[src, dst])


# ------------------------------------------------------------------------------ the move


def live(ctx: ServerContext, project_id: str, ref: str, to: str | None,
         fallback: bool) -> dict[str, Any]:
    report = check(ctx, project_id, ref, to)
    if not report.ok:
        reasons = summary(report.failures)
        if not fallback:
            raise Conflict(f"live migration of {report.instance} is not possible: {reasons}")
        _note(ctx, project_id, ref, f"live migration not possible ({reasons}): moving cold")
        result = cold.migrate(ctx, project_id, ref, to)
        return {**result, "mode": "cold", "fallback": True,
                "reasons": [f.model_dump() for f in report.failures]}
    op_id, instance_id = _begin(ctx, project_id, ref, report.target)
    checkpoint = f"live-{op_id[:12].lower()}"
    # overlay2 on both hosts: the writable layer travels as it is (no commit in the downtime)
    delta = all(f.storage_driver == "overlay2" for f in report.facts)
    try:
        timings = _run(ctx, op_id, instance_id, checkpoint, delta)
    except Exception as exc:  # whatever broke, the instance must run again
        message = exc.message if isinstance(exc, DockyardError) else repr(exc)
        log.warning("live migration %s failed: %s", op_id, message)
        rollback(ctx, op_id, instance_id, checkpoint, message)
        raise BackendError(f"live migration failed, the instance runs on its source host "
                           f"again: {message}") from exc
    plan, _, _ = cold._targets(ctx, op_id)
    return {"operation": op_id, "source": plan["source"], "target": plan["target"],
            "mode": "live", "fallback": False, **timings}


def _note(ctx: ServerContext, project_id: str, ref: str, message: str) -> None:
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        record_event(sess, row, "migrate", message)


def _begin(ctx: ServerContext, project_id: str, ref: str, to: str) -> tuple[str, str]:
    return placement.placing(ctx.db, lambda sess: _begin_in(ctx, sess, project_id, ref, to))


def _begin_in(ctx: ServerContext, sess: Session, project_id: str, ref: str,
              to: str) -> tuple[str, str]:
    row = records.instance_by_ref(sess, project_id, ref)
    if row.state != InstanceState.running:
        raise Conflict(f"instance {row.name} is {row.state}: only a running instance "
                       "migrates")
    return cold.start_move(ctx, sess, row, to, "live_migrate", "live migration")


def step(ctx: ServerContext, op_id: str, name: str, **data: Any) -> None:
    cold.journal(ctx, op_id, name, data)
    faults.point(f"server.live.{name}")


def _run(ctx: ServerContext, op_id: str, instance_id: str, checkpoint: str,
         delta: bool) -> dict[str, Any]:
    plan, src, dst = cold._targets(ctx, op_id)
    gen = int(plan["generation"])
    volumes = cold._volumes(ctx, instance_id)
    dst.pull_image(cold._image(ctx, instance_id))
    first = time.time()
    for name in volumes:
        first = min(first, dst.pull_volume(name, src, None, prune=False))
    base_image = cold._image(ctx, instance_id)
    restore_path = f"/v1/instances/{instance_id}/restore"
    token = src.grant([f"checkpoint:{checkpoint}", f"rootfs:{instance_id}"])
    body: dict[str, Any] = {"checkpoint": checkpoint, "source_url": src.url, "token": token,
                            "rootfs": "delta" if delta else "image", "phase": "all"}
    if delta:  # the container on the target exists before the downtime begins
        body["desired"] = _desired_on_target(ctx, instance_id, plan, base_image)
        dst.call("POST", restore_path, json={**body, "phase": "prepare"})
        body["phase"] = "start"
    step(ctx, op_id, "prepared", volumes=volumes)
    down = time.monotonic()
    dumped = src.call("POST", f"/v1/instances/{instance_id}/checkpoint",
                      json={"checkpoint": checkpoint})
    t_dump = time.monotonic()
    image = base_image
    if not delta:
        image = cold._commit_image(ctx, instance_id, src, gen + 1)
        body["desired"] = _desired_on_target(ctx, instance_id, plan, image)
    t_commit = time.monotonic()
    for name in volumes:
        dst.pull_volume(name, src, first - cold.DELTA_MARGIN, prune=True)
    restored = dst.call("POST", restore_path, json=body)
    downtime = time.monotonic() - down
    step(ctx, op_id, "checkpointed", checkpoint=checkpoint, **dumped)
    step(ctx, op_id, "committed", image=image, rootfs="delta" if delta else "image")
    step(ctx, op_id, "delta_copied")
    step(ctx, op_id, "restored", downtime=round(downtime, 3), **{
        k: v for k, v in restored.items() if k.endswith("_seconds")})
    cold.switch(ctx, instance_id, plan, image, to_target=True)
    step(ctx, op_id, "switched")
    cold.wait_state(ctx, instance_id, InstanceState.running, gen + 1)
    step(ctx, op_id, "running")
    if delta:  # after the downtime: the image follows the root filesystem (a re-create
        _keep_rootfs(ctx, op_id, instance_id, dst, gen + 1)  # keeps it, as cold does)
    cold._remove_source(src, instance_id, gen, volumes)
    cold._best_effort(lambda: src.call("DELETE", _checkpoint_path(instance_id, checkpoint)))
    cold.finish(ctx, op_id, instance_id, "success", None,
                f"live-migrated {plan['source']} -> {plan['target']}, downtime "
                f"{downtime:.2f} s")
    return {"downtime": round(downtime, 3), "checkpoint_seconds": round(t_dump - down, 3),
            "commit_seconds": round(t_commit - t_dump, 3), "checkpoint": dumped,
            "restore": restored}


def _keep_rootfs(ctx: ServerContext, op_id: str, instance_id: str, dst: AgentClient,
                 gen: int) -> None:
    try:
        image = cold._commit_image(ctx, instance_id, dst, gen)
    except DockyardError as exc:  # it runs; only a re-create would lose the delta
        log.warning("live migration %s: commit on the target failed: %s", op_id, exc.message)
        return
    with ctx.db.session() as sess:
        row = sess.get(InstanceRow, instance_id)
        if row is not None and row.generation == gen:
            row.image = image
    step(ctx, op_id, "image_kept", image=image)


def _desired_on_target(ctx: ServerContext, instance_id: str, plan: dict[str, Any],
                       image: str) -> dict[str, Any]:
    """The desired instance exactly as the target will be told after the switch."""
    with ctx.db.session() as sess:
        row = sess.get(InstanceRow, instance_id)
        assert row is not None
        net_row = sess.get(NetworkRow, row.network_id)
        assert net_row is not None
        sess.expunge(row)
        row.host_id = plan["target_id"]
        row.generation = int(plan["generation"]) + 1
        row.image = image
        if int(row.limits.get("cores", 0)) and plan.get("cores"):
            row.limits = {**row.limits, "cpuset": ",".join(str(c) for c in plan["cores"])}
        net = desired_network(net_row, by_ip(peer_map(sess).get(net_row.id, {})))  # the whole list
        d = desired_instance(sess, row, net, list(net_row.dns) or [net_row.gateway], net_row.subnet)
        return d.model_copy(update={"creating": False}).model_dump(mode="json")


def rollback(ctx: ServerContext, op_id: str, instance_id: str, checkpoint: str,
             reason: str) -> None:
    plan, src, dst = cold._targets(ctx, op_id)
    done = _done(ctx, op_id)
    gen = int(plan["generation"])
    if "switched" in done:
        # back to the source's own container, at its generation: a new generation would fence
        # it and create a fresh one from the image (its root filesystem delta and processes
        # lost), where the cold move has a committed image to come back to
        rev = cold.switch(ctx, instance_id, plan, None, to_target=False, generation=gen)
        cold._best_effort(lambda: dst.discard(instance_id, gen + 1, rev))
        cold._best_effort(lambda: src.call("POST", f"/v1/instances/{instance_id}/resume",
                                           json={"checkpoint": checkpoint}))
    else:
        cold._best_effort(lambda: dst.discard(instance_id, gen + 1))
        with ctx.db.session() as sess:
            sess.execute(delete(CoreAllocationRow).where(
                CoreAllocationRow.instance_id == instance_id,
                CoreAllocationRow.host_id == plan["target_id"]))
        for name in cold._volumes(ctx, instance_id):
            cold._best_effort(lambda n=name: dst.remove_volume(n))
        cold._best_effort(lambda: src.call("POST", f"/v1/instances/{instance_id}/resume",
                                           json={"checkpoint": checkpoint}))
    cold._best_effort(lambda: src.call("DELETE", _checkpoint_path(instance_id, checkpoint)))
    cold._best_effort(lambda: dst.call("DELETE", _checkpoint_path(instance_id, checkpoint)))
    cold.finish(ctx, op_id, instance_id, "failure", reason,
                f"live migration to {plan['target']} failed ({reason}); back on "
                f"{plan['source']}")


def _checkpoint_path(instance_id: str, checkpoint: str) -> str:
    return f"/v1/instances/{instance_id}/checkpoints/{checkpoint}"


def _done(ctx: ServerContext, op_id: str) -> set[str]:
    with ctx.db.session() as sess:
        op = sess.get(OperationRow, op_id)
        return {str(s.get("step")) for s in op.steps} if op else set()


def recover(ctx: ServerContext) -> None:
    """At server start (after migrate.recover): a live migration left running is finished
    when the target already runs it, else rolled back (the source resumes)."""
    for op_id, instance_id, done in cold.left_running(ctx, "live_migrate"):
        try:
            _recover_one(ctx, op_id, instance_id, done)
        except Exception as exc:  # one recovery must not keep the others from running
            log.exception("recovery of live migration %s failed", op_id)
            cold.mark_stuck(ctx, op_id, instance_id, exc)


def _recover_one(ctx: ServerContext, op_id: str, instance_id: str, done: set[Any]) -> None:
    checkpoint = f"live-{op_id[:12].lower()}"
    if "switched" in done and _runs_on_target(ctx, op_id, instance_id):
        plan, src, _ = cold._targets(ctx, op_id)
        cold._remove_source(src, instance_id, int(plan["generation"]),
                            cold._volumes(ctx, instance_id))
        cold._best_effort(lambda s=src, i=instance_id, c=checkpoint:
                          s.call("DELETE", _checkpoint_path(i, c)))
        cold.finish(ctx, op_id, instance_id, "success", None,
                    "live migration finished after a server restart")
    else:
        rollback(ctx, op_id, instance_id, checkpoint, "the server restarted mid-migration")


def _runs_on_target(ctx: ServerContext, op_id: str, instance_id: str) -> bool:
    """After the switch the target's copy is the newest state of the instance (it ran on
    from the checkpoint): finish forward once it reports running, roll back only without."""
    plan, _, _ = cold._targets(ctx, op_id)
    try:
        cold.wait_state(ctx, instance_id, InstanceState.running, int(plan["generation"]) + 1,
                        timeout=RECOVERY_WAIT)
    except DockyardError as exc:
        log.warning("live migration %s: the target does not run it (%s): rolling back",
                    op_id, exc.message)
        return False
    return True
