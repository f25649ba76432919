"""App stacks on the server side: deploy (validate, store a version, converge), scale, remove.

    deploy(spec) ─▶ checks, nothing written: compose semantics again (the client may send
        anything), parts not supported yet, every replica a valid instance, the project quota
        for the replicas to add, each changed service's image / network / placement
        (server/instances.validate)
      ─▶ one transaction: a new version (only when the spec changed) + the service rows
         (generation bumped when a service's template changed)
      ─▶ StackReconciler.run ─▶ any error: delete the instances this deploy created, put the
         stack back as it was (or remove a new one), converge that again, raise the error
    scale = deploy of the current spec with other replica counts (a new version)
    remove ─▶ delete every replica's instance, then the stack's rows

One change at a time per stack in this server process (`_lock`); several servers on one
PostgreSQL do not yet exclude each other's deploys of the same stack.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

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
    replica_name,
)
from dockyard.server import instances
from dockyard.server.context import ServerContext
from dockyard.server.stacks_reconciler import StackReconciler, creatable
from dockyard.stacks.replicas import not_yet, template_hash
from dockyard.store import quotas
from dockyard.store import stacks as store
from dockyard.store.stacks import ServiceState, StackState

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _lock(ctx: ServerContext, project_id: str, name: str) -> Iterator[None]:
    with _locks_guard:
        lock = _locks.setdefault((project_id, name), threading.Lock())
    if not lock.acquire(timeout=ctx.settings.wait_timeout):
        raise Conflict(f"stack {name} is being changed by another request; retry")
    try:
        yield
    finally:
        lock.release()


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
    for name, slot in changed:
        instances.validate(ctx, project_id, creatable(spec, name, slot))


def deploy(ctx: ServerContext, project_id: str, spec: StackSpec) -> DeployResult:
    spec = checked(spec)
    with _lock(ctx, project_id, spec.name):
        with ctx.db.read() as sess:
            before = store.find(sess, project_id, spec.name)
        services = _services(spec, before)
        for name, svc in spec.services.items():
            for slot in range(1, svc.replicas + 1):
                creatable(spec, name, slot)
        _precheck(ctx, project_id, spec, before, services)
        body = spec.model_dump(mode="json")
        new_version = before is None or before.spec != body
        if new_version:
            with ctx.db.session() as sess:
                state = store.save_version(sess, project_id, spec.name, body, services)
        else:
            assert before is not None
            state = before
        removed = sorted(set(before.services) - set(services)) if before else []
        rec = StackReconciler(ctx, project_id, state.id, spec, services)
        try:
            rec.run(removed)
        except DockyardError:
            _undo(ctx, project_id, rec, before, new_version)
            raise
        view = show(ctx, project_id, spec.name)
        return DeployResult(**view.model_dump(), changed=bool(new_version or rec.actions),
                            actions=rec.actions, operations=rec.operations)


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
    return deploy(ctx, project_id, spec.model_copy(update={"services": services}))


def remove(ctx: ServerContext, project_id: str, name: str) -> list[str]:
    """Delete every replica's instance and the stack; returns the delete operations."""
    with _lock(ctx, project_id, name):
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
                            state=r.state, health=None, host=r.host, ip=r.ip) for r in reps]
    services = [ServiceView(name=name, image=svc.image, replicas=state.services[name].replicas
                            if name in state.services else svc.replicas,
                            running=sum(r.service == name and r.state == "running"
                                        for r in reps),
                            version=state.services[name].generation
                            if name in state.services else 0)
                for name, svc in sorted(spec.services.items())]
    return StackView(name=state.name, project=project, version=state.version,
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
