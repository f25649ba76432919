"""Weighers: among feasible hosts, which is best?

A weigher has a `name` and `score(host, request) -> float` in [0, 1], where 1 is best. Scores
are normalized per host (a fraction of that host's own capacity) so weighers with different
units can be summed; the pipeline combines them as a weighted average, which is in [0, 1] too.
Weighers only see hosts that passed every filter.

Both weighers below spread load: the host with the most headroom *after* the placement wins.
"""

from __future__ import annotations

from typing import Protocol

from dockyard.scheduler.cpusets import shared_pool
from dockyard.scheduler.snapshot import HostSnapshot, PlacementRequest

__all__ = ["FewestTakenCores", "MostFreeMemory", "Weigher"]


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


class Weigher(Protocol):
    name: str

    def score(self, host: HostSnapshot, request: PlacementRequest) -> float: ...


class MostFreeMemory:
    """Fraction of the host's (overcommitted) memory still free after this instance."""

    name = "most-free-memory"

    def __init__(self, overcommit: float) -> None:
        self.overcommit = overcommit

    def score(self, host: HostSnapshot, request: PlacementRequest) -> float:
        capacity = host.memory_bytes * self.overcommit
        if capacity <= 0:
            return 0.0
        free = capacity - host.memory_reserved_bytes - (request.memory_bytes or 0)
        return _clamp(free / capacity)


class FewestTakenCores:
    """Fraction of the host's cores still in the shared pool after this instance."""

    name = "fewest-taken-cores"

    def score(self, host: HostSnapshot, request: PlacementRequest) -> float:
        if not host.cores:
            return 0.0
        left = len(shared_pool(host.cores, host.taken_cores, host.reserved_cores)) - request.cores
        return _clamp(left / len(set(host.cores)))
