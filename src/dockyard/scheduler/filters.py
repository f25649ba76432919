"""Feasibility filters: may this host take this instance at all?

A filter has a `name` and two forms of the same check:

* `feasible(host, request) -> str | None`: the reason it rejects one host, or `None` when the
  host passes. The readable specification; the table-driven tests pin it down.
* `rejects(index, request)`: the same check over every host at once (numpy), as a sequence of
  `(reason, mask)` pairs, the mask True where the host is rejected for that reason. Several
  pairs when one filter has several reasons; their order is the order `feasible` tests them.
  `place` and `explain` run this form; a test checks it agrees with `feasible` on random
  views.

Reasons are fixed phrases (no per-host numbers) so that "no valid host" can count hosts per
reason; the details are in `explain`'s per-host view and in the host listing.

Filters are pure and cheap; `build_pipeline` in `pipeline.py` orders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from dockyard.errors import NoCapacity
from dockyard.scheduler.cpusets import allocate_exclusive
from dockyard.scheduler.index import BoolArray, HostIndex
from dockyard.scheduler.view import HostView, PlacementRequest

__all__ = [
    "REASON_CORES", "REASON_DISK", "REASON_DOWN", "REASON_DRAINING", "REASON_MEMORY",
    "REASON_NETWORK", "REASON_NO_KVM", "REASON_PIDS", "AntiAffinityFilter", "ConstraintFilter",
    "DiskFits", "ExclusiveCores", "Filter", "HostUp", "MemoryFits", "NetworkOnHost", "PidsFit",
    "PinnedHost", "Rejections", "VmCapable", "anti_affinity_reason", "constraint_reason",
    "pinned_reason",
]

REASON_DOWN = "host is down"
REASON_DRAINING = "host is draining"
REASON_NETWORK = "network not on host"
REASON_MEMORY = "not enough memory"
REASON_DISK = "not enough disk"
REASON_PIDS = "not enough pids"
REASON_CORES = "not enough free cores"
REASON_NO_KVM = "no KVM on host (/dev/kvm)"

Rejections = Sequence[tuple[str, BoolArray]]


def pinned_reason(host_name: str) -> str:
    return f"not the requested host {host_name!r}"


def constraint_reason(key: str, value: str) -> str:
    return f"constraint {key}={value} not met"


def anti_affinity_reason(group: str) -> str:
    return f"anti-affinity: group {group} already on host"


class Filter(Protocol):
    name: str

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None: ...

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections: ...


class PinnedHost:
    """`--host NAME`: every other host is rejected."""

    name = "pinned-host"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        if request.host is not None and host.name != request.host:
            return pinned_reason(request.host)
        return None

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        if request.host is None:
            return ()
        mask = np.ones(len(index), dtype=np.bool_)
        position = index.position.get(request.host)
        if position is not None:
            mask[position] = False
        return ((pinned_reason(request.host), mask),)


class HostUp:
    """Only hosts whose agent is alive and that are not being emptied take new instances."""

    name = "host-up"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        if not host.up:
            return REASON_DOWN
        if host.draining:
            return REASON_DRAINING
        return None

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        return ((REASON_DOWN, index.down), (REASON_DRAINING, index.draining))


class NetworkOnHost:
    """The instance's network must be plumbed (bridge or OVS) on the host."""

    name = "network-on-host"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        return None if request.network_id in host.networks else REASON_NETWORK

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        return ((REASON_NETWORK, ~index.on_network(request.network_id)),)


class ConstraintFilter:
    """`--constraint key=value`: the host's label `key` must equal `value`.

    Constraints are checked in key order, so a host failing several is named by the first.
    """

    name = "constraint"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        for key, value in sorted(request.constraints.items()):
            if host.labels.get(key) != value:
                return constraint_reason(key, value)
        return None

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        return [(constraint_reason(key, value), ~index.label_is(key, value))
                for key, value in sorted(request.constraints.items())]


class AntiAffinityFilter:
    """`--anti-affinity GROUP`: no host runs two instances of the same group."""

    name = "anti-affinity"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        group = request.anti_affinity
        return anti_affinity_reason(group) if group is not None and group in host.groups \
            else None

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        if request.anti_affinity is None:
            return ()
        group = request.anti_affinity
        return ((anti_affinity_reason(group), index.has_group(group)),)


class VmCapable:
    """`--type vm`: only hosts whose agent reported it can run VMs (`HostInventory.vm_accel`)."""

    name = "vm-capable"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        return REASON_NO_KVM if request.vm and not host.vm else None

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        return ((REASON_NO_KVM, ~index.vm),) if request.vm else ()


class MemoryFits:
    """Reserved memory plus the request stays within memory × overcommit ratio. A VM's memory
    is its guest's RAM, held by QEMU whether the guest uses it or not: it must fit without
    over-commit (a ratio above 1 counts as 1 for it)."""

    name = "memory"

    def __init__(self, overcommit: float) -> None:
        self.overcommit = overcommit

    def _ratio(self, request: PlacementRequest) -> float:
        return min(self.overcommit, 1.0) if request.vm else self.overcommit

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        need = request.memory_bytes or 0
        if host.memory_reserved_bytes + need <= host.memory_bytes * self._ratio(request):
            return None
        return REASON_MEMORY

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        need = request.memory_bytes or 0
        return ((REASON_MEMORY,
                 index.memory_reserved + need > index.capacity("memory",
                                                               self._ratio(request))),)


class DiskFits:
    """Hosts with a disk budget keep reserved disk plus the request within it × overcommit."""

    name = "disk"

    def __init__(self, overcommit: float) -> None:
        self.overcommit = overcommit

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        if host.disk_bytes is None:
            return None
        need = request.disk_bytes or 0
        if host.disk_reserved_bytes + need <= host.disk_bytes * self.overcommit:
            return None
        return REASON_DISK

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        need = request.disk_bytes or 0
        return ((REASON_DISK,
                 index.disk_reserved + need > index.capacity("disk", self.overcommit)),)


class PidsFit:
    """Hosts with a pids budget keep the sum of instance pids limits within it × overcommit."""

    name = "pids"

    def __init__(self, overcommit: float = 1.0) -> None:
        self.overcommit = overcommit

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        if host.pids_limit_total is None:
            return None
        if host.pids_reserved + request.pids <= host.pids_limit_total * self.overcommit:
            return None
        return REASON_PIDS

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        return ((REASON_PIDS,
                 index.pids_reserved + request.pids > index.capacity("pids", self.overcommit)),)


class ExclusiveCores:
    """Enough free cores for the request while one stays shared (`cpusets` invariant)."""

    name = "exclusive-cores"

    def feasible(self, host: HostView, request: PlacementRequest) -> str | None:
        try:
            allocate_exclusive(host.cores, host.taken_cores, host.reserved_cores, request.cores)
        except NoCapacity:
            return REASON_CORES
        return None

    def rejects(self, index: HostIndex, request: PlacementRequest) -> Rejections:
        if request.cores == 0:
            return ()
        return ((REASON_CORES, index.free_cores < request.cores + 1),)
