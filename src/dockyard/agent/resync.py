"""Which instances a full resync must sync: those whose cheap reads differ from what their
last converged pass left (the rest are enqueued by events and watch changes as always).

    full watch reply ─▶ HostView: one `docker ps -a` list + one netlink link dump
        ─▶ per instance: `reason(d, memo, view, probes)`  (dict lookups, one stat per file,
           /proc/PID/cgroup and the cgroup's io file)
        ─▶ a reason → enqueue the id (the reconciler's full pass: inspect, netns, tc …)

`Converged` is what a pass that ended in `running` or `stopped` saw (the reconciler records
it, and drops it when a pass starts). An instance is left alone only when every read agrees
with it: the same desired state (peers included), the same container in the same state and
generation, its PID still in that container's cgroup, its host veth up on the right bridge,
its files untouched, its disk throttles in force. What no cheap read shows (eth0 inside the
netns, tc rates) is checked by a full pass at least every `deep_after` seconds of the
instance's memo (jittered so the full passes of many instances do not come together), and at
every resync for an instance with network rates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.adapters import cgroups
from dockyard.adapters.docker_engine import ContainerState
from dockyard.adapters.hostlinks import LinkState
from dockyard.agent.hostfiles import InstanceFiles
from dockyard.model import ids
from dockyard.model.agent import DesiredInstance
from dockyard.model.instance import DesiredState, Limits

__all__ = ["Converged", "HostProbes", "HostView", "Probes", "reason"]

DEEP_RESYNCS = 10  # a full pass of each instance at least every this many resyncs
# desired fields that change nothing on a converged instance: `creating` only decides what a
# pass does about a missing container (roll back, or re-create), and the server clears it
# after the first report without sending the instance again until the next full reply
_NOT_CONVERGED = frozenset({"creating"})


@dataclass(frozen=True)
class Converged:
    desired: DesiredInstance  # what the pass converged to (its network with the peers it used)
    container_id: str
    pid: int  # 0: stopped
    at: float  # monotonic time the pass ended
    deep_after: float = field(default_factory=lambda: random.uniform(0.75, 1.0))  # fraction


@dataclass(frozen=True)
class HostView:
    """One resync's bulk reads."""

    containers: dict[str, ContainerState]  # by container name
    links: dict[str, LinkState]  # by link name


class Probes(Protocol):
    """The per-instance reads that stay cheap (files and /proc, no socket)."""

    def runs_in(self, pid: int, container_id: str) -> bool: ...
    def io_matches(self, pid: int, d: DesiredInstance) -> bool: ...
    def files_unchanged(self, instance_id: str) -> bool: ...


def reason(d: DesiredInstance, memo: Converged | None, view: HostView, probes: Probes,
           now: float, deep_interval: float) -> str | None:
    """Why `d` needs a full pass at this resync, or None when it is as its last pass left it."""
    if memo is None:
        return "no converged pass"
    if now - memo.at > deep_interval * memo.deep_after:
        return "full pass due"
    if memo.desired != d:
        changed = [f for f in DesiredInstance.model_fields
                   if f not in _NOT_CONVERGED and getattr(memo.desired, f) != getattr(d, f)]
        if changed:
            return f"desired {', '.join(changed)} changed"
    if d.limits.ingress_bps is not None or d.limits.egress_bps is not None:
        return "network rates (tc) are only read by a full pass"
    container = view.containers.get(ids.container_name(d.id))
    if container is None or container.id != memo.container_id:
        return "container gone or replaced"
    if container.labels.get(ids.LABEL_GENERATION) != str(d.generation):
        return "generation"
    veth = view.links.get(ids.host_veth_name(d.id))
    if d.desired_state == DesiredState.stopped:
        if container.running or veth is not None:
            return "runs or is plumbed while stopped"
    else:
        if not container.running or not probes.runs_in(memo.pid, container.id):
            return "not running, or restarted"
        if veth is None or not veth.up:
            return "host veth missing or down"
        bridge = view.links.get(d.network.bridge)
        on_ovs = d.network.mode == "ovs" and d.network.vlan is not None  # an OVS port
        if not on_ovs and (bridge is None or veth.master != bridge.index):
            return "host veth not on its bridge"
        if not probes.io_matches(memo.pid, d):
            return "disk throttles differ"
    if not probes.files_unchanged(d.id):
        return "files changed"
    return None


class _IoCheck(Protocol):
    def io_matches(self, pid: int, limits: Limits) -> bool: ...


class HostProbes:
    """The real `Probes`: /proc, the cgroup's io file (the agent's limits), the files' stats."""

    def __init__(self, files: InstanceFiles, limits: _IoCheck) -> None:
        self.files = files
        self.limits = limits

    def runs_in(self, pid: int, container_id: str) -> bool:
        return cgroups.runs_in(pid, container_id)

    def io_matches(self, pid: int, d: DesiredInstance) -> bool:
        return self.limits.io_matches(pid, d.limits)

    def files_unchanged(self, instance_id: str) -> bool:
        return self.files.unchanged(instance_id)
