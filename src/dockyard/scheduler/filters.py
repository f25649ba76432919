"""Feasibility filters: may this host take this instance at all?

A filter has a `name` and `feasible(host, request) -> str | None`, returning the reason it
rejects the host or `None` when the host passes. Reasons are fixed phrases (no per-host
numbers) so that "no valid host" can count hosts per reason; the details are in `explain`'s
per-host view and in the host listing.

Filters are pure and cheap; `build_pipeline` in `pipeline.py` orders them.
"""

from __future__ import annotations

from typing import Protocol

from dockyard.errors import NoCapacity
from dockyard.scheduler.cpusets import allocate_exclusive
from dockyard.scheduler.snapshot import HostSnapshot, PlacementRequest

__all__ = [
    "REASON_CORES", "REASON_DOWN", "REASON_DRAINING", "REASON_MEMORY", "REASON_NETWORK",
    "REASON_PIDS", "ExclusiveCores", "Filter", "HostUp", "MemoryFits", "NetworkOnHost",
    "PidsFit", "PinnedHost", "pinned_reason",
]

REASON_DOWN = "host is down"
REASON_DRAINING = "host is draining"
REASON_NETWORK = "network not on host"
REASON_MEMORY = "not enough memory"
REASON_PIDS = "not enough pids"
REASON_CORES = "not enough free cores"


def pinned_reason(host_name: str) -> str:
    return f"not the requested host {host_name!r}"


class Filter(Protocol):
    name: str

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None: ...


class PinnedHost:
    """`--host NAME`: every other host is rejected."""

    name = "pinned-host"

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        if request.host is not None and host.name != request.host:
            return pinned_reason(request.host)
        return None


class HostUp:
    """Only hosts whose agent is alive and that are not being emptied take new instances."""

    name = "host-up"

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        if not host.up:
            return REASON_DOWN
        if host.draining:
            return REASON_DRAINING
        return None


class NetworkOnHost:
    """The instance's network must be plumbed (bridge or OVS) on the host."""

    name = "network-on-host"

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        return None if request.network_id in host.networks else REASON_NETWORK


class MemoryFits:
    """Reserved memory plus the request stays within memory × overcommit ratio."""

    name = "memory"

    def __init__(self, overcommit: float) -> None:
        self.overcommit = overcommit

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        need = request.memory_bytes or 0
        if host.memory_reserved_bytes + need <= host.memory_bytes * self.overcommit:
            return None
        return REASON_MEMORY


class PidsFit:
    """Hosts with a pids budget keep the sum of instance pids limits within it."""

    name = "pids"

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        if host.pids_limit_total is None:
            return None
        if host.pids_reserved + request.pids <= host.pids_limit_total:
            return None
        return REASON_PIDS


class ExclusiveCores:
    """Enough free cores for the request while one stays shared (`cpusets` invariant)."""

    name = "exclusive-cores"

    def feasible(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        try:
            allocate_exclusive(host.cores, host.taken_cores, host.reserved_cores, request.cores)
        except NoCapacity:
            return REASON_CORES
        return None
