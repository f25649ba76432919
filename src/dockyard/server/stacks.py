"""App stacks on the server side: deploy (validate, store a version, converge), scale, remove.

    deploy(spec) ─▶ checks, nothing written: compose semantics again (the client may send
        anything), parts not supported yet, every replica a valid instance, the project quota
        for the replicas to add, each changed service's image / network / placement
        (server/instances.validate)
      ─▶ one transaction: no Host of `x-dockyard.http` claimed twice or by another stack
         (409; under a lock row), a new version (only when the spec changed) + the service
         rows (generation bumped when a service's template changed)
      ─▶ StackReconciler.run (one pass) ─▶ any error: delete the instances this deploy
         created, put the stack back as it was (or remove a new one), converge that again,
         raise the error
      ─▶ settle: a changed template (status `updating`) is driven to its end in the request
         (up to wait_timeout; the background loop finishes a longer one), a first deploy or
         a scale (`converging`) is left to the loop once its instances are created
    settle ─▶ done: `converged` │ paused: `paused` (+ reason, an event)
           ─▶ rollback: the version before is deployed again as a new version (note
              "rollback to N"), the failed one noted "failed: …", driven with
              rollback_config (`rolling_back`); a rollback that fails itself pauses
    scale = deploy of the current spec with other replica counts (a new version)
    rollback(NAME [SERVICE]) = deploy of the newest earlier version that differs and did
        not fail (only SERVICE's part of it when given)
    remove ─▶ delete every replica's instance, then the stack's rows

One change at a time per stack: in this server process `lock`, across servers on one
PostgreSQL the stack's lease (`stacks.lease_owner/lease_until`, taken by one conditional
UPDATE, renewed between passes, LEASE seconds); the background loop
(`server/stacks_loop.py`) takes the same two.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from dockyard.compose.build import Problems, check_stack_name
from dockyard.compose.loader import ComposeError, check_replica_name
from dockyard.compose.semantics import check_services, start_order
from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.model.stack import (
    DeployResult,
    ReplicaView,
    ServiceView,
    StackSpec,
    StackView,
    VersionView,
    replica_name,
)
from dockyard.server import instances
from dockyard.server.context import ServerContext
from dockyard.server.stacks_reconciler import StackReconciler, creatable
from dockyard.stacks.entrance import clashes
from dockyard.stacks.planner import Decision, Status
from dockyard.stacks.replicas import not_yet, template_hash
from dockyard.store import entrance as entrance_store
from dockyard.store import quotas
from dockyard.store import stacks as store
from dockyard.store.stacks import ServiceState, StackState

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
LEASE = 30.0  # seconds a server holds a stack it converges without renewing
OWNER = f"{socket.gethostname()}:{os.getpid()}"  # this server process, in lease rows


@contextmanager
def lock(ctx: ServerContext, project_id: str, name: str,
          timeout: float | None = None) -> Iterator[None]:
    with _locks_guard:
        held = _locks.setdefault((project_id, name), threading.Lock())
    if not held.acquire(timeout=ctx.settings.wait_timeout if timeout is None else timeout):
        raise Conflict(f"stack {name} is being changed by another request; retry")
    try:
        yield
    finally:
        held.release()


def renew(ctx: ServerContext, stack_id: str, name: str) -> None:
    """Take or extend this server's lease on the stack; 409 when another server holds it.
    A lease of a server process of this machine that no longer runs (this server before a
    restart, killed mid-update) is taken at once, not after LEASE."""
    now = datetime.now(UTC)
    until = now + timedelta(seconds=LEASE)
    with ctx.db.session() as sess:
        if store.take_lease(sess, stack_id, OWNER, now, until):
            return
        holder = store.lease_owner(sess, stack_id)
        if not (gone_owner(holder) and store.take_lease(sess, stack_id, OWNER, now, until,
                                                        stale=holder)):
            raise Conflict(f"stack {name} is being converged by another server; retry")


def gone_owner(owner: str | None, hostname: str | None = None) -> bool:
    """Whether the lease owner `owner` (HOSTNAME:PID) is a process of this machine that is
    gone. A process of another machine, or a pid that runs (even reused by another program),
    is not: its lease is waited out."""
    host, _, pid = (owner or "").rpartition(":")
    if host != (hostname or socket.gethostname()) or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release(ctx: ServerContext, stack_id: str) -> None:
    with ctx.db.session() as sess:
        store.release_lease(sess, stack_id, OWNER)


def checked(spec: StackSpec) -> StackSpec:
    """The spec with its first-start order recomputed, or a 422 naming every problem."""
    problems = Problems()
    check_stack_name(spec.name, problems)
    for key, svc in spec.services.items():
        if svc.name != key:
            problems.add(("services", key, "name"), f"must be the service's key {key!r}")
        check_replica_name(spec.name, key, problems)
    check_services(spec.services, spec.networks, problems)
    items = problems.items + not_yet(spec)
    if not spec.services:
        items.append("services: a stack needs at least one service")
    if items:
        raise ComposeError(items)
    graph = {name: list(svc.depends_on) for name, svc in spec.services.items()}
    return spec.model_copy(update={"start_order": start_order(graph)})


def _services(spec: StackSpec, before: StackState | None) -> dict[str, ServiceState]:
    out = {}
    for name, svc in spec.services.items():
        digest = template_hash(svc)
        prev = before.services.get(name) if before else None
        generation = 1 if prev is None else prev.generation + (prev.template_hash != digest)
        out[name] = ServiceState(name, svc.replicas, generation, digest)
    return out


def _precheck(ctx: ServerContext, project_id: str, spec: StackSpec,
              before: StackState | None, services: dict[str, ServiceState]) -> None:
    """Quota for the replicas to add and each changed service's instance path; no writes."""
    to_add: dict[str, int] = {}
    changed: list[tuple[str, int]] = []
    with ctx.db.read() as sess:
        for name, want in services.items():
            slots = ([] if before is None else
                     [r.slot for r in store.replicas(sess, before.id, name)
                      if r.instance_name is not None])
            to_add[name] = max(0, want.replicas - len(slots))
            prev = before.services.get(name) if before else None
            if want.replicas and (to_add[name] or prev is None
                                  or prev.generation != want.generation):
                free = min(set(range(1, len(slots) + 2)) - set(slots))
                changed.append((name, free))
    cores, memory = 0, 0
    unlimited = False  # a replica to add without a memory limit
    for name, count in to_add.items():
        limits = spec.services[name].limits
        cores += limits.cores * count
        if count:
            unlimited |= limits.memory is None
            memory += (limits.memory or 0) * count
    claim = quotas.Claim(instances=sum(to_add.values()), cores=cores,
                         memory_bytes=None if unlimited else memory)
    with ctx.db.session() as sess:
        quotas.enforce(sess, project_id, claim)
    for name, slot in changed:  # the slot's last replica may still be going: _start waits
        instances.validate(ctx, project_id, creatable(spec, name, slot), name_freeing_ok=True)


def _check_hosts(sess: Session, project_id: str, spec: StackSpec) -> None:
    """409 when a Host the spec publishes is another service's or another stack's (checked
    in the transaction that stores the version, under the claims lock)."""
    wanted = {name: svc.http.host for name, svc in spec.services.items() if svc.http}
    if not wanted:
        return
    problems = clashes(project_id, spec.name, wanted, entrance_store.claims(sess))
    if problems:
        raise Conflict("; ".join(problems))


def deploy(ctx: ServerContext, project_id: str, spec: StackSpec,
           note: str = "deploy") -> DeployResult:
    spec = checked(spec)
    with lock(ctx, project_id, spec.name):
        with ctx.db.read() as sess:
            before = store.find(sess, project_id, spec.name)
        if before is not None:
            renew(ctx, before.id, spec.name)
        try:
            return _deploy(ctx, project_id, spec, before, note)
        finally:
            with ctx.db.read() as sess:
                now = store.find(sess, project_id, spec.name)
            if now is not None:
                release(ctx, now.id)


def _deploy(ctx: ServerContext, project_id: str, spec: StackSpec, before: StackState | None,
            note: str) -> DeployResult:
    services = _services(spec, before)
    for name, svc in spec.services.items():
        for slot in range(1, svc.replicas + 1):
            creatable(spec, name, slot)
    _precheck(ctx, project_id, spec, before, services)
    body = spec.model_dump(mode="json")
    new_version = before is None or before.spec != body
    updating = before is not None and any(
        name in before.services and before.services[name].generation != svc.generation
        for name, svc in services.items())
    if new_version:
        with ctx.db.session() as sess:
            _check_hosts(sess, project_id, spec)
            state = store.save_version(sess, project_id, spec.name, body, services,
                                       "updating" if updating else "converging", note)
            if updating:
                store.record_event(sess, project_id, spec.name, "stack_update",
                                   f"update to version {state.version} started")
    else:
        assert before is not None
        state = before
    removed = sorted(set(before.services) - set(services)) if before else []
    rec = StackReconciler(ctx, project_id, state.id, spec, services,
                          updating=state.status in ("updating", "rolling_back"),
                          rolling_back=state.status == "rolling_back")
    try:
        rec.run(removed)
    except DockyardError:
        _undo(ctx, project_id, rec, before, new_version)
        raise
    until = time.monotonic() + (ctx.settings.wait_timeout if rec.updating else 0)
    settle(ctx, project_id, state.id, rec, until)
    view = show(ctx, project_id, spec.name)
    return DeployResult(**view.model_dump(), changed=bool(new_version or rec.actions),
                        actions=rec.actions, operations=rec.operations)


def settle(ctx: ServerContext, project_id: str, stack_id: str, rec: StackReconciler,
           until: float) -> Decision:
    """Drive `rec` until settled or `until`, store the outcome; a rollout that asks for a
    rollback gets it (the caller holds the stack's lock and lease)."""
    decision = rec.drive([], until, lambda: renew(ctx, stack_id, rec.spec.name))
    name = rec.spec.name
    with ctx.db.session() as sess:
        state = store.by_id(sess, stack_id)
        if state is None:
            return decision
        if decision.status is Status.done:
            if state.status != "converged":
                store.set_status(sess, stack_id, "converged")
                if rec.updating:
                    store.record_event(sess, project_id, name, "stack_update",
                                       f"version {state.version} rolled out")
            return decision
        if decision.status is Status.waiting:
            return decision
        if decision.status is Status.paused or rec.rolling_back:
            store.set_status(sess, stack_id, "paused", decision.reason)
            store.record_event(sess, project_id, name, "stack_paused", decision.reason)
            return decision
    target = _rollback_target(ctx, stack_id)
    if target is None:
        with ctx.db.session() as sess:
            store.set_status(sess, stack_id, "paused", f"{decision.reason}; no earlier "
                             "version to roll back to")
        return decision
    with ctx.db.session() as sess:
        store.set_note(sess, stack_id, state.version, f"failed: {decision.reason}")
        store.record_event(sess, project_id, name, "stack_rollback",
                           f"version {state.version} failed ({decision.reason}); rolling "
                           f"back to version {target.version}")
    back = StackSpec.model_validate(target.spec)
    services = _services(back, state)
    with ctx.db.session() as sess:
        new = store.save_version(sess, project_id, name, back.model_dump(mode="json"),
                                 services, "rolling_back", f"rollback to {target.version}")
    again = StackReconciler(ctx, project_id, new.id, back, services, updating=True,
                            rolling_back=True)
    again.run(sorted(set(state.services) - set(services)))
    return settle(ctx, project_id, stack_id, again, until)


def _rollback_target(ctx: ServerContext, stack_id: str,
                     ) -> store.VersionState | None:
    """The newest earlier version whose spec differs from the current one and that did not
    fail."""
    with ctx.db.read() as sess:
        state = store.by_id(sess, stack_id)
        history = store.versions(sess, stack_id)
    if state is None:
        return None
    for version in reversed(history):
        if (version.version < state.version and version.spec != state.spec
                and not version.note.startswith("failed")):
            return version
    return None


def rollback(ctx: ServerContext, project_id: str, name: str,
             service: str | None = None) -> DeployResult:
    """`stack rollback NAME [SERVICE]`: deploy the previous version again (its SERVICE)."""
    with ctx.db.read() as sess:
        state = store.get(sess, project_id, name)
    target = _rollback_target(ctx, state.id)
    if target is None:
        raise Conflict(f"stack {name} has no earlier version to roll back to")
    back = StackSpec.model_validate(target.spec)
    current = StackSpec.model_validate(state.spec)
    if service is not None:
        if service not in current.services or service not in back.services:
            raise NotFound(f"service {service} is not in both version {state.version} and "
                           f"version {target.version} of stack {name}")
        back = current.model_copy(update={"services": {
            **current.services, service: back.services[service]}})
    return deploy(ctx, project_id, back, note=f"rollback to {target.version}"
                  + (f" ({service})" if service else ""))


def history(ctx: ServerContext, project_id: str, name: str) -> list[VersionView]:
    with ctx.db.read() as sess:
        state = store.get(sess, project_id, name)
        versions = store.versions(sess, state.id)
    return [VersionView(version=v.version, current=v.version == state.version, note=v.note,
                        services={svc: str(body.get("image", "")) for svc, body in
                                  sorted((v.spec.get("services") or {}).items())},
                        created_at=v.created_at.isoformat()) for v in versions]


def _undo(ctx: ServerContext, project_id: str, rec: StackReconciler,
          before: StackState | None, new_version: bool) -> None:
    """A failed deploy: its instances deleted, the stack as it was (converged again)."""
    for instance_id in rec.created:
        with suppress(NotFound):
            instances.delete(ctx, project_id, instance_id, force=True)
    if new_version:
        with ctx.db.session() as sess:
            store.restore(sess, before, project_id, rec.spec.name)
    if before is not None:
        spec = StackSpec.model_validate(before.spec)
        # the deploy's own error is the answer; `stack ps` shows what is left if this fails
        with suppress(DockyardError):
            StackReconciler(ctx, project_id, before.id, spec, before.services).run(
                sorted(set(rec.services) - set(before.services)))


def scale(ctx: ServerContext, project_id: str, name: str,
          replicas: dict[str, int]) -> DeployResult:
    with ctx.db.read() as sess:
        state = store.get(sess, project_id, name)
    spec = StackSpec.model_validate(state.spec)
    unknown = sorted(set(replicas) - set(spec.services))
    if unknown:
        raise NotFound(f"stack {name} has no service {', '.join(unknown)}")
    services = {svc: body.model_copy(update={"replicas": replicas.get(svc, body.replicas)})
                for svc, body in spec.services.items()}
    return deploy(ctx, project_id, spec.model_copy(update={"services": services}),
                  note="scale")


def remove(ctx: ServerContext, project_id: str, name: str) -> list[str]:
    """Delete every replica's instance and the stack; returns the delete operations."""
    with lock(ctx, project_id, name):
        with ctx.db.read() as sess:
            state = store.get(sess, project_id, name)
            reps = store.replicas(sess, state.id)
        ops = []
        for rep in reps:
            if rep.instance_id is not None and rep.instance_name is not None:
                with suppress(NotFound):
                    ops.append(instances.delete(ctx, project_id, rep.instance_id, force=True))
        with ctx.db.session() as sess:
            store.drop(sess, state.id)
        return ops


def _view(project: str, state: StackState,
          reps: list[store.ReplicaState]) -> StackView:
    spec = StackSpec.model_validate(state.spec)
    replicas = [ReplicaView(name=r.instance_name or replica_name(state.name, r.service, r.slot),
                            service=r.service, slot=r.slot, version=r.generation,
                            instance=r.instance_id if r.instance_name else None,
                            state=r.state, health=r.health if r.instance_name else None,
                            host=r.host, ip=r.ip) for r in reps]
    services = [ServiceView(name=name, image=svc.image, replicas=state.services[name].replicas
                            if name in state.services else svc.replicas,
                            running=sum(r.service == name and r.state == "running"
                                        for r in reps),
                            version=state.services[name].generation
                            if name in state.services else 0)
                for name, svc in sorted(spec.services.items())]
    return StackView(name=state.name, project=project, version=state.version,
                     status=state.status, status_reason=state.status_reason,
                     services=services, replicas=replicas, spec=spec,
                     created_at=state.created_at.isoformat(),
                     updated_at=state.updated_at.isoformat())


def show(ctx: ServerContext, project_id: str, name: str) -> StackView:
    with ctx.db.read() as sess:
        state = store.get(sess, project_id, name)
        return _view(store.project_name(sess, project_id), state,
                     store.replicas(sess, state.id))


def page(ctx: ServerContext, project_id: str, after: str, limit: int) -> list[StackView]:
    with ctx.db.read() as sess:
        project = store.project_name(sess, project_id)
        return [_view(project, state, store.replicas(sess, state.id))
                for state in store.page(sess, project_id, after, limit)]
