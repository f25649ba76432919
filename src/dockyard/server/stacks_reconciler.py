"""StackReconciler: converge a stack's replicas to its stored services, one service at a time.

    drive(until) ─▶ pass after pass until every service is done, one is paused or asks for a
                    rollback, or `until` passed (waiting on health: polled every POLL s)
    a pass:
    for each service removed from the stack: delete every replica
    for each service in first-start order (depends_on; a service without replicas waits
    until every replica of its `service_healthy` dependencies is healthy):
        lost hosts ─▶ a replica on a host silent for LOST_AFTER heartbeat timeouts is moved
                   off it as `evacuate` moves instances (same name and IP, new generation;
                   the copy left behind is fenced when its host returns)
        observe ─▶ replica rows + their instances (a row without a live instance: adopted when
                   its instance exists, else forgotten); the first time a replica is seen
                   running its row gets `started_at` (its monitor window starts)
                ─▶ health: stacks.replicas.health_of(state, dockerd's health, up for, monitor)
                ─▶ stacks.planner.plan(replicas, Desired(generation, replicas, update_config
                   or rollback_config), Progress(updating, since the last batch))
                ─▶ progressing: run the steps, observe again │ anything else: next service
        Start(N)   reserve the row STACK-SERVICE-N, wait until the name is free,
                   server/instances.create (the ordinary instance path: quota, placement,
                   ledger), bind the row to the instance
        Stop(N)    server/instances.delete (force), forget the row
        a batch   first its image pulled onto the hosts it will use (`_prepull`), then
                  the replicas it stops drained from the HTTP entrance (`_drain`), then:
        Replace(N) Stop(N), then Start(N) (stop-first: the name is reused)
        Restart(N) server/instances.set_desired(restart); the row counts the restart and its
                   monitor window starts again

Level-triggered: the store says what is wanted, the instance rows what is; a run that died at
any line is repaired by the next run (a reserved row without an instance is dropped, one
whose instance exists is bound to it). Instances this run created are listed in `created`,
so a caller can undo a deploy that failed half-way. A replica made from the service's current
template (same hash) is new even when its generation number is older: a rollback to the
previous spec keeps the replicas that already run it. An update keeps nothing in memory: its
status is the stack's row, the start of each service's last batch its service row
(`last_batch_at`, so `delay` holds across a server restart), its replicas' versions and
health their rows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.orm import Session

from dockyard.errors import BackendError, Conflict, DockyardError, InvalidRequest, NotFound
from dockyard.model.instance import DesiredState, InstanceAction, InstanceCreate
from dockyard.model.stack import DependencyCondition, StackSpec, replica_name
from dockyard.server import entrance, evacuate, instances
from dockyard.server.agent_proxy import LONG
from dockyard.server.context import ServerContext
from dockyard.stacks.entrance import Replica as EntranceReplica
from dockyard.stacks.entrance import serving
from dockyard.stacks.planner import (
    Decision,
    Desired,
    Health,
    Progress,
    Replace,
    Replica,
    Restart,
    Start,
    Status,
    Step,
    plan,
)
from dockyard.stacks.replicas import health_of, instance_spec
from dockyard.store import hosts
from dockyard.store import stacks as store
from dockyard.store.stacks import ReplicaState, ServiceState

LOST_AFTER = 2  # heartbeat timeouts of silence before a host's replicas are moved off it
NAME_POLL = 0.1  # seconds between looks at a name still held by a deleting instance
POLL = 0.5  # seconds between passes while replicas are starting


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
    updating: bool = False  # a rollout: new replicas that fail count against it
    rolling_back: bool = False  # with rollback_config
    created: list[str] = field(default_factory=list)  # instance ids made by this run
    operations: list[str] = field(default_factory=list)  # their create operations
    actions: list[str] = field(default_factory=list)
    pulled: set[tuple[str, str]] = field(default_factory=set)  # (host, image) pre-pulled

    def run(self, removed: list[str]) -> dict[str, Decision]:
        """One pass; the planner's last word per service."""
        for name in removed:
            for rep in self.observe(name):
                self._stop(name, rep)
        order = [*self.spec.start_order,
                 *sorted(set(self.spec.services) - set(self.spec.start_order))]
        decisions: dict[str, Decision] = {}
        for name in order:
            blocked = self._unhealthy_dependencies(name)
            decisions[name] = (Decision(Status.waiting, reason=f"waiting for {blocked} to be "
                                        "healthy (depends_on: service_healthy)") if blocked
                               else self.converge(name))
        return decisions

    def _unhealthy_dependencies(self, service: str) -> str:
        """A service's first start waits for its `service_healthy` dependencies: every
        replica of each healthy ("" when none is missing or it has replicas already)."""
        if self.observe(service):
            return ""
        blocked = []
        for dep, condition in sorted(self.spec.services[service].depends_on.items()):
            if condition is not DependencyCondition.service_healthy:
                continue
            reps = [self.replica(dep, r) for r in self.observe(dep)]
            if len(reps) < self.services[dep].replicas or any(
                    r.health is not Health.healthy for r in reps):
                blocked.append(dep)
        return ", ".join(blocked)

    def drive(self, removed: list[str], until: float,
              renew: Callable[[], None] | None = None) -> Decision:
        """Passes until settled or `until` (monotonic); `renew` keeps a lease between them."""
        while True:
            decisions = self.run(removed)
            removed = []
            for status in (Status.rollback, Status.paused):
                hit = [f"{name}: {d.reason}" for name, d in decisions.items()
                       if d.status is status]
                if hit:
                    return Decision(status, reason="; ".join(hit))
            waiting = [d for d in decisions.values() if d.status is not Status.done]
            if not waiting:
                return Decision(Status.done)
            if time.monotonic() >= until:
                return Decision(Status.waiting, reason="; ".join(d.reason for d in waiting))
            if renew is not None:
                renew()
            time.sleep(max(0.05, min([POLL, *(d.wait for d in waiting if d.wait)])))

    def observe(self, service: str) -> list[ReplicaState]:
        """The service's replicas that have a live instance; other rows adopted or dropped."""
        with self.ctx.db.session() as sess:
            live = []
            for rep in store.replicas(sess, self.stack_id, service):
                if rep.instance_name is not None:
                    if rep.state == "running" and rep.started_at is None:
                        store.mark_started(sess, self.stack_id, service, rep.slot,
                                           datetime.now(UTC))
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

    def replica(self, service: str, rep: ReplicaState) -> Replica:
        """A replica as the planner sees it (version, health)."""
        svc = self.spec.services[service]
        want = self.services[service]
        version = (want.generation if rep.template_hash == want.template_hash
                   else rep.generation)
        config = svc.rollback_config if self.rolling_back else svc.update_config
        up_for = (None if rep.started_at is None else
                  (datetime.now(UTC) - _aware(rep.started_at)).total_seconds())
        health = health_of(rep.state, rep.health, up_for, config.monitor_for(svc.healthcheck))
        return Replica(rep.slot, version, health, svc.fixed_ip, rep.restarts)

    def converge(self, service: str) -> Decision:
        svc = self.spec.services[service]
        want = self.services[service]
        config = svc.rollback_config if self.rolling_back else svc.update_config
        desired = Desired(want.generation, want.replicas, config, svc.fixed_ip)
        self._off_lost_hosts(service)
        for _ in range(2 * want.replicas + 2 * len(self.observe(service)) + 4):
            reps = {r.slot: r for r in self.observe(service)}
            with self.ctx.db.read() as sess:
                since = store.last_batch(sess, self.stack_id, service)
            progress = Progress(updating=self.updating, since_last_batch=None if since is None
                                else (datetime.now(UTC) - _aware(since)).total_seconds())
            decision = plan([self.replica(service, r) for r in reps.values()], desired,
                            progress)
            going = [reps[s.index] for s in decision.steps if decision.status is
                     Status.progressing and not isinstance(s, Start | Restart)
                     and s.index in reps]
            self._undrain(service, [r for r in reps.values() if r.draining
                                    and r.slot not in {g.slot for g in going}])
            if decision.status is not Status.progressing:
                return decision
            if decision.reason.startswith("update "):  # a batch: progress as an event
                with self.ctx.db.session() as sess:
                    store.mark_batch(sess, self.stack_id, service, datetime.now(UTC))
                    store.record_event(sess, self.project_id, self.spec.name,
                                       "stack_rollback" if self.rolling_back
                                       else "stack_update", f"{service}: {decision.reason}")
                self.ctx.notifier.bump()
                self._prepull(service, decision, reps)
            self._drain(service, going)
            for step in decision.steps:
                self._step(service, step, reps)
            if decision.reason.startswith("repair "):
                self._repaired(service, decision.steps)
        raise BackendError(f"service {service} did not converge")

    def _prepull(self, service: str, batch: Decision, reps: dict[int, ReplicaState]) -> None:
        """The batch's image onto its target hosts before any step of it runs, so a replica's
        downtime is not a pull: the hosts of the replicas it replaces (a stop-first replica
        comes back into their room) and the host the scheduler picks now for each new one.
        A registry image only (a host-local one was checked to exist); each (host, image)
        once per run; a pull that fails stops the batch before anything is stopped."""
        ref = self.ctx.registry.resolve(self.spec.services[service].image)
        if ref is None:
            return
        targets = {reps[s.index].host for s in batch.steps
                   if not isinstance(s, Start) and s.index in reps} - {None}
        for step in batch.steps:
            if isinstance(step, Start):
                with contextlib.suppress(DockyardError):  # the create itself will say why
                    targets.add(instances.validate(
                        self.ctx, self.project_id, creatable(self.spec, service,
                                                             step.index))[0].host_name)
        todo = sorted(h for h in targets if h is not None and (h, ref) not in self.pulled)
        if not todo:
            return
        began = time.monotonic()
        with self.ctx.db.read() as sess:
            rows = [hosts.by_name(sess, name) for name in todo]
        for row in rows:
            if row is not None and row.api_url:
                self.ctx.agents.to(row.name, row.api_url, row.api_secret, LONG).pull_image(ref)
                self.pulled.add((row.name, ref))
        with self.ctx.db.session() as sess:
            store.record_event(sess, self.project_id, self.spec.name,
                               "stack_rollback" if self.rolling_back else "stack_update",
                               f"{service}: pulled {ref} on {', '.join(todo)} "
                               f"({time.monotonic() - began:.1f}s) before {batch.reason}")

    def _off_lost_hosts(self, service: str) -> None:
        """A replica whose host is lost (silent for LOST_AFTER heartbeat timeouts) is
        re-placed on another host as `evacuate` does: same name and IP, a new generation, so
        the copy on the lost host is stopped by fencing when it comes back. Its name cannot be
        freed for a new replica while that host is away, so it is moved, not replaced."""
        with self.ctx.db.read() as sess:
            lost = lost_hosts(sess, self.ctx.settings.heartbeat_timeout)
        for rep in self.observe(service):
            if rep.host not in lost or rep.instance_id is None:
                continue
            try:
                name, target = evacuate.move(self.ctx, rep.instance_id, str(rep.host))
            except DockyardError as exc:  # no room elsewhere: tried again next round
                note = f"{rep.instance_name} stays on lost host {rep.host}: {exc.message}"
            else:
                note = f"moved {name} off lost host {rep.host} to {target}"
                with self.ctx.db.session() as sess:
                    store.mark_started(sess, self.stack_id, service, rep.slot, None)
            with self.ctx.db.session() as sess:
                store.record_event(sess, self.project_id, self.spec.name, "stack_repair",
                                   f"{service}: {note}")
            self.actions.append(note)

    def _drain(self, service: str, going: list[ReplicaState]) -> None:
        """Replicas about to be stopped leave the entrance first: marked draining (out of
        its routes), then the stop waits until every entrance runs the routes without them
        and DRAIN_GRACE more for the requests HAProxy's old worker still holds on them, so
        no request meets a vanished replica. Nothing to wait for when the service is not
        published, none of them took traffic, or no entrance runs."""
        fresh = [r for r in going if not r.draining]
        if self.spec.services[service].http is None or not going:
            return
        if fresh:
            with self.ctx.db.session() as sess:
                store.mark_draining(sess, self.stack_id, service, [r.slot for r in fresh],
                                    datetime.now(UTC))
            self.ctx.notifier.bump()  # the entrance agents' long polls answer now
        if not any(serving(self.replica_view(r)) for r in going):
            return  # none of them took traffic
        began = time.monotonic()
        running, behind = entrance.wait_applied(self.ctx)
        if not running:
            return
        if behind:
            with self.ctx.db.session() as sess:
                store.record_event(sess, self.project_id, self.spec.name, "stack_update",
                                   f"{service}: the entrance on {', '.join(behind)} did not "
                                   f"confirm the drain in {entrance.DRAIN_TIMEOUT:g}s; "
                                   "stopping anyway")
        time.sleep(entrance.DRAIN_GRACE)
        self.actions.append(f"drained {', '.join(str(r.instance_name) for r in fresh)} "
                            f"({time.monotonic() - began:.1f}s)")

    def _undrain(self, service: str, kept: list[ReplicaState]) -> None:
        """Draining replicas the plan no longer stops (a run that died between the drain and
        the stop, then the wanted count rose): back into the entrance."""
        if kept:
            with self.ctx.db.session() as sess:
                store.mark_draining(sess, self.stack_id, service, [r.slot for r in kept], None)
            self.ctx.notifier.bump()

    @staticmethod
    def replica_view(rep: ReplicaState) -> EntranceReplica:
        return EntranceReplica(str(rep.instance_name), rep.state, rep.ip, rep.health)

    def _repaired(self, service: str, steps: tuple[Step, ...]) -> None:
        what = ", ".join(f"{'restarted' if isinstance(s, Restart) else 'replaced'} "
                         f"{replica_name(self.spec.name, service, s.index)}" for s in steps)
        with self.ctx.db.session() as sess:
            store.record_event(sess, self.project_id, self.spec.name, "stack_repair",
                               f"{what} (unhealthy)")

    def _step(self, service: str, step: Step, reps: dict[int, ReplicaState]) -> None:
        if isinstance(step, Start):
            self._start(service, step.index, step.version)
            return
        if isinstance(step, Restart):
            self._restart(service, reps[step.index])
            return
        self._stop(service, reps[step.index])
        if isinstance(step, Replace):
            self._start(service, step.index, step.version)

    def _start(self, service: str, slot: int, generation: int) -> None:
        spec = creatable(self.spec, service, slot)
        self._wait_name_free(spec.name)
        with self.ctx.db.session() as sess:
            store.reserve_replica(sess, self.stack_id, service, slot, generation,
                                  self.services[service].template_hash)
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

    def _restart(self, service: str, rep: ReplicaState) -> None:
        """The first repair of an unhealthy replica; its monitor window starts again."""
        assert rep.instance_id is not None
        instances.set_desired(self.ctx, self.project_id, rep.instance_id,
                              InstanceAction.restart)
        with self.ctx.db.session() as sess:
            store.mark_started(sess, self.stack_id, service, rep.slot, None, restarted=True)
        self.actions.append(f"restarted {rep.instance_name} (unhealthy)")
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


def lost_hosts(sess: Session, heartbeat_timeout: float) -> frozenset[str]:
    """Names of the hosts silent for LOST_AFTER heartbeat timeouts."""
    cutoff = datetime.now(UTC) - timedelta(seconds=LOST_AFTER * heartbeat_timeout)
    silent = hosts.silent_since(sess, cutoff)
    return frozenset(row.name for row in hosts.among_by_name(sess, set(silent))) if silent \
        else frozenset()


def _aware(at: datetime) -> datetime:
    """SQLite gives naive datetimes back (they are UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
