"""StackReconciler: converge a stack's replicas to its stored services, one service at a time.

    for each service removed from the stack: delete every replica
    for each service in first-start order (depends_on):
        observe ─▶ replica rows + their instances (a row without a live instance: adopted when
                   its instance exists, else forgotten)
                ─▶ stacks.planner.plan(replicas, Desired(generation, replicas))
                ─▶ progressing: run the steps, observe again │ anything else: next service
        Start(N)   reserve the row STACK-SERVICE-N, wait until the name is free,
                   server/instances.create (the ordinary instance path: quota, placement,
                   ledger), bind the row to the instance
        Stop(N)    server/instances.delete (force), forget the row
        Replace(N) Stop(N), then Start(N) (stop-first: the name is reused)

Level-triggered: the store says what is wanted, the instance rows what is; a run that died at
any line is repaired by the next run (a reserved row without an instance is dropped, one
whose instance exists is bound to it). Instances this run created are listed in `created`,
so a caller can undo a deploy that failed half-way. Without healthchecks (not yet) a replica
that is created and not failed counts as healthy.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from dockyard.errors import BackendError, Conflict, InvalidRequest, NotFound
from dockyard.model.instance import DesiredState, InstanceCreate
from dockyard.model.stack import ServiceSpec, StackSpec, replica_name
from dockyard.server import instances
from dockyard.server.context import ServerContext
from dockyard.stacks.planner import Desired, Progress, Replace, Replica, Start, Status, Step, plan
from dockyard.stacks.replicas import health_of, instance_spec
from dockyard.store import stacks as store
from dockyard.store.stacks import ReplicaState, ServiceState

NAME_POLL = 0.1  # seconds between looks at a name still held by a deleting instance


def creatable(spec: StackSpec, service: str, slot: int) -> InstanceCreate:
    """The replica's instance spec; a name or value the instance API refuses is a 422."""
    try:
        return instance_spec(spec, service, slot)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                            for e in exc.errors())
        raise InvalidRequest(f"services.{service}: replica "
                             f"{replica_name(spec.name, service, slot)} is not a valid "
                             f"instance ({details})") from exc


@dataclass
class StackReconciler:
    ctx: ServerContext
    project_id: str
    stack_id: str
    spec: StackSpec
    services: dict[str, ServiceState]
    created: list[str] = field(default_factory=list)  # instance ids made by this run
    operations: list[str] = field(default_factory=list)  # their create operations
    actions: list[str] = field(default_factory=list)

    def run(self, removed: list[str]) -> None:
        for name in removed:
            for rep in self.observe(name):
                self._stop(name, rep)
        order = [*self.spec.start_order,
                 *sorted(set(self.spec.services) - set(self.spec.start_order))]
        for name in order:
            self.converge(name)

    def observe(self, service: str) -> list[ReplicaState]:
        """The service's replicas that have a live instance; other rows adopted or dropped."""
        with self.ctx.db.session() as sess:
            live = []
            for rep in store.replicas(sess, self.stack_id, service):
                if rep.instance_name is not None:
                    live.append(rep)
                    continue
                found = store.instance_named(sess, self.project_id, replica_name(
                    self.spec.name, service, rep.slot)) if rep.instance_id is None else None
                if found is not None:  # created, then the run died before binding it
                    store.bind_replica(sess, self.stack_id, service, rep.slot, found)
                    live.extend(r for r in store.replicas(sess, self.stack_id, service)
                                if r.slot == rep.slot)
                else:
                    store.forget_replica(sess, self.stack_id, service, rep.slot)
            return live

    def converge(self, service: str) -> None:
        svc = self.spec.services[service]
        want = self.services[service]
        desired = Desired(want.generation, want.replicas, svc.update_config, svc.fixed_ip)
        for _ in range(2 * want.replicas + 2 * len(self.observe(service)) + 4):
            reps = {r.slot: r for r in self.observe(service)}
            decision = plan([Replica(r.slot, r.generation, health_of(r.state or ""),
                                     svc.fixed_ip) for r in reps.values()],
                            desired, Progress(updating=False))
            if decision.status is not Status.progressing:
                return
            for step in decision.steps:
                self._step(service, svc, step, reps)
        raise BackendError(f"service {service} did not converge")

    def _step(self, service: str, svc: ServiceSpec, step: Step,
              reps: dict[int, ReplicaState]) -> None:
        if isinstance(step, Start):
            self._start(service, step.index, step.version)
            return
        self._stop(service, reps[step.index])
        if isinstance(step, Replace):
            self._start(service, step.index, step.version)

    def _start(self, service: str, slot: int, generation: int) -> None:
        spec = creatable(self.spec, service, slot)
        self._wait_name_free(spec.name)
        with self.ctx.db.session() as sess:
            store.reserve_replica(sess, self.stack_id, service, slot, generation)
        try:
            instance_id, op_id = instances.create(self.ctx, self.project_id, spec)
        except BaseException:
            with self.ctx.db.session() as sess:
                store.forget_replica(sess, self.stack_id, service, slot)
            raise
        self.created.append(instance_id)
        self.operations.append(op_id)
        with self.ctx.db.session() as sess:
            store.bind_replica(sess, self.stack_id, service, slot, instance_id)
        self.ctx.notifier.bump()  # agents rewrite /etc/hosts with the service name
        self.actions.append(f"created {spec.name}")

    def _stop(self, service: str, rep: ReplicaState) -> None:
        if rep.instance_id is not None:
            with contextlib.suppress(NotFound):
                instances.delete(self.ctx, self.project_id, rep.instance_id, force=True)
        with self.ctx.db.session() as sess:
            store.forget_replica(sess, self.stack_id, service, rep.slot)
        name = rep.instance_name or replica_name(self.spec.name, service, rep.slot)
        self.actions.append(f"deleted {name}")

    def _wait_name_free(self, name: str) -> None:
        """A replaced replica's instance holds its name until its agent removed it; a live
        instance of that name is not this stack's (its rows are checked first): 409."""
        deadline = time.monotonic() + self.ctx.settings.wait_timeout
        while True:
            with self.ctx.db.read() as sess:
                holder = store.name_holder(sess, self.project_id, name)
            if holder is None:
                return
            if holder != DesiredState.deleted:
                raise Conflict(f"an instance named {name!r} already exists and is not a "
                               f"replica of stack {self.spec.name}; delete or rename it")
            if time.monotonic() > deadline:
                raise BackendError(f"instance {name} is still being deleted after "
                                   f"{self.ctx.settings.wait_timeout:.0f}s")
            time.sleep(NAME_POLL)
