"""`sync(desired) -> observed`: one level-triggered pass over one instance.

    read Docker (inspect by name, ownership labels) and netlink (eth0 in the netns)
      ├─ desired deleted  → remove container, host veth, files            → "deleted"
      ├─ missing          → files, pull a registry image the engine lacks (progress is
      │                     reported as `creating` "pulling 37%"), create (labels, binds)
      ├─ stale generation → stop, set aside (rename, never delete), create anew
      ├─ desired running  → restart if asked, start, plumb eth0 if absent/wrong, cpuset
      └─ desired stopped  → stop, unplumb                                  → "stopped"

A `type: vm` instance is handed to the VM runtime (agent/vm.py), which converges its QEMU
process the same level-triggered way; nothing below touches Docker for it.

Every step is idempotent, so a crash at any line is repaired by the next pass. A failure
during the *first* create rolls back everything this pass created and reports the instance
`deleted` with `failed_create`, so the server releases its IP and cores. Temporary errors
(dockerd unreachable) propagate to the caller, which retries with backoff.

Fencing (DESIGN.md): a container whose generation differs from the desired one is a stale
copy. The server only sends an agent the instances placed on its own host, so a stale copy
seen here means the instance is wanted on *this* host again with a newer generation (it was
re-placed while the host was down, and came back here): the copy is ours to replace. It is
stopped and renamed `dy-<id>.stale-g<gen>-<short id>` (kept, with its data, never deleted by
fencing), and `dy-<id>` is created for the new generation. A stale copy of an instance that
now lives on *another* host is not in this host's desired state at all: the resync finds it
as an orphan and stops it, never deletes it. Set-aside copies go when the instance is deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from dockyard import faults
from dockyard.adapters.docker_engine import (
    ContainerInfo,
    ContainerSpec,
    DockerEngine,
    MountSpec,
    Resources,
    cpu_quota,
)
from dockyard.adapters.lxcfs import Lxcfs
from dockyard.agent.disks import ContainerDisks
from dockyard.agent.hostfiles import InstanceFiles
from dockyard.agent.pull import PullMeter
from dockyard.agent.resync import Converged
from dockyard.agent.security import HostPolicy, confinement, resolve_host_path
from dockyard.errors import BackendError, DockyardError, TemporaryError
from dockyard.model import ids
from dockyard.model.agent import DesiredInstance, DesiredNetwork, ObservedState
from dockyard.model.health import HealthState
from dockyard.model.image import names_registry
from dockyard.model.instance import DesiredState, InstanceType, Limits

log = logging.getLogger(__name__)


class Eth0View(Protocol):
    """Read-only (netlink's `Eth0` is a frozen dataclass)."""

    @property
    def mac(self) -> str: ...
    @property
    def addresses(self) -> list[str]: ...
    @property
    def up(self) -> bool: ...


class HostNetwork(Protocol):
    """The netlink/iptables operations the reconciler needs (fakes implement it in tests)."""

    def ensure_network(self, net: DesiredNetwork) -> None: ...
    def plumb(self, pid: int, d: DesiredInstance) -> None: ...
    def arrived(self, d: DesiredInstance) -> None: ...
    def unplumb(self, instance_id: str) -> None: ...
    def eth0(self, pid: int) -> Eth0View | None: ...


class HostLimits(Protocol):
    """Limits enforced outside docker (disk IO throttles, network rates)."""

    def ensure_io(self, pid: int, limits: Limits) -> None: ...
    def io_matches(self, pid: int, limits: Limits) -> bool: ...
    def ensure_rates(self, pid: int, instance_id: str, limits: Limits) -> None: ...


class NoHostLimits:
    def ensure_io(self, pid: int, limits: Limits) -> None:
        return None

    def io_matches(self, pid: int, limits: Limits) -> bool:
        return True

    def ensure_rates(self, pid: int, instance_id: str, limits: Limits) -> None:
        return None


class VmSync(Protocol):
    """The VM runtime (agent/vm.py): `type: vm` instances are QEMU processes, not containers."""

    def sync(self, d: DesiredInstance) -> ObservedState: ...


class Progress(Protocol):
    """Where the reconciler tells the server about a long step (an image pull) as it goes."""

    def report(self, d: DesiredInstance, observed: ObservedState) -> None: ...
    def event(self, d: DesiredInstance, kind: str, message: str) -> None: ...


class NoProgress:
    def report(self, d: DesiredInstance, observed: ObservedState) -> None:
        return None

    def event(self, d: DesiredInstance, kind: str, message: str) -> None:
        return None


RESOURCE_FIELDS = ("cpuset", "cpu_shares", "cpu_quota", "memory", "pids_limit")


def wanted_resources(limits: Limits) -> Resources:
    return Resources(cpuset=limits.cpuset, cpu_shares=limits.cpu_weight,
                     cpu_quota=cpu_quota(limits.cpus), memory=limits.memory_bytes,
                     pids_limit=limits.pids)


def has_io_limits(limits: Limits) -> bool:
    return any(v is not None for v in (limits.read_bps, limits.write_bps, limits.read_iops,
                                       limits.write_iops))


def has_rates(limits: Limits) -> bool:
    return limits.ingress_bps is not None or limits.egress_bps is not None


def resource_changes(want: Resources, have: Resources) -> set[str]:
    """Fields `docker update` must change. An empty cpuset means "unpinned"; a memory limit
    can be changed live but not removed (dockerd refuses), so None there is left alone."""
    fields = {f for f in RESOURCE_FIELDS if getattr(want, f) != getattr(have, f)}
    if not want.cpuset:
        fields.discard("cpuset")
    if want.memory is None:
        fields.discard("memory")
    return fields


class Reconciler:
    def __init__(self, engine: DockerEngine, network: HostNetwork, files: InstanceFiles,
                 cluster: str, stop_timeout: int = 10,
                 limits: HostLimits | None = None, lxcfs: Lxcfs | None = None,
                 progress: Progress | None = None, host: str = "",
                 policy: HostPolicy | None = None, vms: VmSync | None = None,
                 disks: ContainerDisks | None = None) -> None:
        self.engine = engine
        self.network = network
        self.files = files
        self.cluster = cluster
        self.stop_timeout = stop_timeout
        self.limits = limits or NoHostLimits()
        self.lxcfs = lxcfs
        self.progress = progress or NoProgress()
        self.host = host  # labelled on containers: agents may share a dockerd
        self.policy = policy or HostPolicy()
        self.vms = vms
        self.disks = disks
        # ids of containers this reconciler is starting: their `start` event is its own doing,
        # and the pass that started them plumbs and converges them (no second pass needed)
        self._own_starts: set[str] = set()
        # instance id -> what its last pass converged to (agent/resync.py); none while a
        # pass runs or after one that did not end in running/stopped
        self.converged: dict[str, Converged] = {}

    def own_start(self, container_id: str) -> bool:
        """True (once) when the `start` event of `container_id` comes from a sync's start."""
        if container_id in self._own_starts:
            self._own_starts.discard(container_id)
            return True
        return False

    def _start(self, name: str, container_id: str) -> ContainerInfo:
        self._own_starts.add(container_id)
        try:
            return self.engine.start(name)
        except BaseException:
            self._own_starts.discard(container_id)
            raise

    def sync(self, d: DesiredInstance) -> ObservedState:
        self.converged.pop(d.id, None)
        if d.type == InstanceType.vm:
            if self.vms is None:
                return self._observed(d, "error", None, "this agent runs no VM instances")
            return self.vms.sync(d)
        name = ids.container_name(d.id)
        info = self.engine.inspect(name)
        if info is not None and info.labels.get(ids.LABEL_CLUSTER) != self.cluster:
            return self._observed(d, "error", None, f"container {name} belongs to another "
                                  "cluster; not touching it")
        if d.desired_state == DesiredState.deleted:
            self._remove(d.id)
            return self._observed(d, "deleted", None)
        if info is None:
            if not d.creating:
                log.warning("instance %s lost its container; re-creating it", d.name)
            return self._create(d)
        if int(info.labels.get(ids.LABEL_GENERATION, "0")) != d.generation:
            self._set_aside(d, info)
            return self._create(d)
        return self._converge(d, info)

    def _set_aside(self, d: DesiredInstance, info: ContainerInfo) -> None:
        """Fence a stale copy: stopped first (it must never run next to the new one with the
        same IP), then renamed out of the way, never deleted."""
        old = info.labels.get(ids.LABEL_GENERATION, "0")
        self.engine.stop(info.id, self.stop_timeout)
        self.network.unplumb(d.id)
        aside = f"{ids.container_name(d.id)}.stale-g{old}-{info.id[:8]}"
        self.engine.rename(info.id, aside)
        log.warning("instance %s: generation %s is stale (now %d): stopped and kept as %s",
                    d.name, old, d.generation, aside)

    def _converge(self, d: DesiredInstance, info: ContainerInfo) -> ObservedState:
        name = ids.container_name(d.id)
        self.files.write(d)
        if d.desired_state == DesiredState.stopped:
            self.network.unplumb(d.id)
            faults.point("agent.stop.unplumbed")
            if info.running:
                self.engine.stop(name, self.stop_timeout)
                faults.point("agent.stop.stopped")
            self._converged(d, info.id, 0)
            return self._observed(d, "stopped", info.id)
        self.network.ensure_network(d.network)
        if d.restart_serial > self.files.applied_restart(d.id):
            if info.running:
                self.engine.stop(name, self.stop_timeout)
                info = self._inspect(name)
            self.files.set_applied_restart(d.id, d.restart_serial)
        if not info.running:
            self._ensure_disk(d, info)
            info = self._start(name, info.id)
            faults.point("agent.start.started")
        self._ensure_plumbed(d, info)
        self._ensure_limits(d, info)
        self._converged(d, info.id, info.pid)
        return self._observed(d, "running", info.id, health=_health(info.health))

    def _create(self, d: DesiredInstance) -> ObservedState:
        name = ids.container_name(d.id)
        try:
            self.files.write(d)
            if d.creating:
                self.files.set_applied_restart(d.id, d.restart_serial)
            faults.point("agent.create.files_written")
            self.network.ensure_network(d.network)
            self._ensure_image(d)
            container_id = self.engine.create(self._spec(d))
            faults.point("agent.create.container_created")
            self._ensure_disk(d, self._inspect(name))
            if d.desired_state == DesiredState.stopped:
                self._converged(d, container_id, 0)
                return self._observed(d, "stopped", container_id)
            info = self._start(name, container_id)
            faults.point("agent.create.started")
            # a container just made has no eth0, no throttle and no tbf: plumb at once (plumb
            # re-checks what it finds) and write only the limits asked for
            self.network.plumb(info.pid, d)
            if d.generation > 1:  # a move, a rebuild or an evacuation made it elsewhere before
                self.network.arrived(d)
            if has_io_limits(d.limits):
                self.limits.ensure_io(info.pid, d.limits)
            if has_rates(d.limits):
                self.limits.ensure_rates(info.pid, d.id, d.limits)
            faults.point("agent.create.plumbed")
            self._converged(d, info.id, info.pid)
            return self._observed(d, "running", info.id, health=_health(info.health))
        except TemporaryError:
            raise
        except DockyardError as exc:
            if not d.creating:
                raise
            log.warning("create of %s failed, rolling back: %s", d.name, exc.message)
            self._rollback(d.id)
            return ObservedState(state="deleted", generation=d.generation, failed_create=True,
                                 message=exc.message)

    def _converged(self, d: DesiredInstance, container_id: str, pid: int) -> None:
        self.converged[d.id] = Converged(d, container_id, pid, time.monotonic())

    def ensure_image(self, d: DesiredInstance) -> None:
        """Public for a live restore (agent/live.py), which creates the container itself."""
        self._ensure_image(d)

    def spec(self, d: DesiredInstance) -> ContainerSpec:
        return self._spec(d)

    def _ensure_image(self, d: DesiredInstance) -> None:
        """Pull a registry image this engine lacks; a local-only name is left to `create`."""
        if not names_registry(d.image) or self.engine.image_exists(d.image):
            return
        started = time.monotonic()
        self.progress.event(d, "pull", f"pulling {d.image}")

        def report(message: str) -> None:
            self.progress.report(d, ObservedState(state="creating", message=message,
                                                  generation=d.generation,
                                                  restart_serial=d.restart_serial))

        report(f"pulling {d.image}")
        meter = PullMeter(report)
        for message in self.engine.pull(d.image):
            meter.feed(message)
        self.progress.event(d, "pulled", f"pulled {d.image} in "
                            f"{time.monotonic() - started:.1f} s")

    def _ensure_plumbed(self, d: DesiredInstance, info: ContainerInfo) -> None:
        eth0 = self.network.eth0(info.pid)
        want = f"{d.ip}/{d.prefixlen}"
        if eth0 is None or eth0.mac != d.mac or want not in eth0.addresses or not eth0.up:
            self.network.plumb(info.pid, d)

    def _ensure_limits(self, d: DesiredInstance, info: ContainerInfo) -> None:
        want = wanted_resources(d.limits)
        fields = resource_changes(want, info.resources)
        if fields:
            self.engine.update(info.id, want, fields)
        self.limits.ensure_io(info.pid, d.limits)
        self.limits.ensure_rates(info.pid, d.id, d.limits)

    def _ensure_disk(self, d: DesiredInstance, info: ContainerInfo) -> None:
        """`--disk`: the container's layer in its own filesystem of that size, before it runs."""
        if d.disk_bytes is None:
            return
        if self.disks is None:
            raise BackendError("this agent runs no container disks")
        self.disks.ensure(d.id, info.layer_dir, d.disk_bytes)

    def _release_disks(self, instance_id: str) -> None:
        """Before Docker removes a container, its layer's filesystem is unmounted (a mount
        point cannot be removed), and the overlay over it must be gone: the container stops."""
        if self.disks is None or not self.disks.dir(instance_id).is_dir():
            return
        name = ids.container_name(instance_id)
        if self.engine.inspect(name) is not None:
            self.engine.stop(name, self.stop_timeout)
        self.disks.release(instance_id)

    def _inspect(self, name: str) -> ContainerInfo:
        info = self.engine.inspect(name)
        if info is None:
            raise TemporaryError(f"container {name} vanished during sync", delay=0.2)
        return info

    def _remove(self, instance_id: str) -> None:
        # The veth goes first: once the container is gone the kernel tears its netns down
        # asynchronously, and the host end would linger for a while.
        self.network.unplumb(instance_id)
        faults.point("agent.delete.unplumbed")
        self._release_disks(instance_id)
        self.engine.remove(ids.container_name(instance_id))
        faults.point("agent.delete.container_removed")
        for info in self.engine.list_owned(self.cluster, instance_id):  # set aside by fencing
            self.engine.remove(info.id)
        self.files.remove(instance_id)

    def _rollback(self, instance_id: str) -> None:
        """Undo a failed first create, step by step: one step failing (a veth name held by
        something that is not ours, say) must not keep the others from running."""
        steps: tuple[Callable[[], object], ...] = (
            lambda: self.network.unplumb(instance_id),
            lambda: self._release_disks(instance_id),
            lambda: self.engine.remove(ids.container_name(instance_id)),
            lambda: self.files.remove(instance_id))
        for step in steps:
            try:
                step()
            except TemporaryError:
                raise
            except DockyardError as exc:
                log.warning("rollback of %s: %s (left as is)", instance_id, exc.message)

    def _spec(self, d: DesiredInstance) -> ContainerSpec:
        mounts = [
            MountSpec(str(self.files.hosts(d.id)), "/etc/hosts", True, "bind"),
            MountSpec(str(self.files.resolv(d.id)), "/etc/resolv.conf", True, "bind"),
        ]
        # host paths are mounted by their resolved name, checked against the allowed root
        mounts += [MountSpec(resolve_host_path(v.source, self.policy.host_path_root),
                             v.target, v.read_only, "bind") if v.is_host_path
                   else MountSpec(v.source, v.target, v.read_only, "volume")
                   for v in d.volumes]
        if d.ssh_keys:
            mounts.append(MountSpec(str(self.files.authorized_keys(d.id)),
                                    "/etc/dockyard/authorized_keys", True, "bind"))
        labels = {ids.LABEL_CLUSTER: self.cluster, ids.LABEL_INSTANCE: d.id,
                  ids.LABEL_NAME: d.name, ids.LABEL_PROJECT: d.project,
                  ids.LABEL_GENERATION: str(d.generation)}
        if self.host:
            labels[ids.LABEL_HOST] = self.host
        if d.lxcfs and self.lxcfs is not None and self.lxcfs.available():
            mounts += self.lxcfs.mounts()
            labels[ids.LABEL_LXCFS] = "1"
        elif d.lxcfs:
            log.warning("lxcfs is not running: %s gets the host's view of /proc", d.name)
        limits = d.limits
        confine = confinement(d, self.policy)
        return ContainerSpec(
            name=ids.container_name(d.id), image=d.image, hostname=d.hostname,
            labels=labels,
            env=d.env, cpuset=limits.cpuset, pids_limit=limits.pids,
            cpu_quota=cpu_quota(limits.cpus),
            cpu_shares=limits.cpu_weight, memory=limits.memory_bytes, mounts=mounts,
            stop_timeout=self.stop_timeout, cap_add=confine.cap_add,
            cap_drop=confine.cap_drop, security_opt=confine.security_opt,
            healthcheck=d.healthcheck.docker() if d.healthcheck else None,
            command=d.command, entrypoint=d.entrypoint)

    @staticmethod
    def _observed(d: DesiredInstance, state: str, container_id: str | None,
                  message: str | None = None,
                  health: HealthState = HealthState.none) -> ObservedState:
        return ObservedState(state=state, container_id=container_id, message=message,
                             generation=d.generation, restart_serial=d.restart_serial,
                             revision=d.revision, health=health)


def _health(status: str) -> HealthState:
    """dockerd's State.Health.Status; anything else (no healthcheck) is `none`."""
    try:
        return HealthState(status)
    except ValueError:
        return HealthState.none
