"""Weighers: among feasible hosts, which is best?

A weigher has a `name` and `score(host, request) -> float` in [0, 1], where 1 is best. Scores
are normalized per host (a fraction of that host's own capacity) so weighers with different
units can be summed; the pipeline combines them as a weighted average, which is in [0, 1] too.
Weighers only see hosts that passed every filter (the vectorized form scores every host; the
pipeline ignores the scores of rejected ones).

Like filters, each weigher has a per-host `score` (the specification) and a vectorized
`scores(index, request)` computing the same numbers with the same operations in the same
order, so that ties break the same way in both forms.

`SpreadWeigher` (the default strategy) prefers the host with the most headroom after the
placement: free memory, free shared cores and fewest instances, averaged. `PackWeigher` is its
mirror image (1 - spread): fill the busiest host that still fits, keep others empty.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from dockyard.scheduler.cpusets import shared_pool
from dockyard.scheduler.index import FloatArray, HostIndex
from dockyard.scheduler.view import HostView, PlacementRequest

__all__ = ["FewestInstances", "FewestTakenCores", "GroupSpreadWeigher", "MostFreeMemory",
           "PackWeigher", "SpreadWeigher", "Weigher", "spread_member"]


def spread_member(group: str) -> str:
    """How a soft spread group shows among a host's groups: `~GROUP`, which no hard
    anti-affinity group (a name) can be."""
    return f"~{group}"


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """Clamped `numerator / denominator`, 0 where the denominator is not positive."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return np.clip(out, 0.0, 1.0, out=out)


class Weigher(Protocol):
    name: str

    def score(self, host: HostView, request: PlacementRequest) -> float: ...

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray: ...


class GroupSpreadWeigher:
    """`spread_group` (a stack's replicas of one service): 1 on a host without an instance
    of the group, 0 on one with. Soft: with a weight above the strategy's, it decides between
    hosts unless every feasible host has one (more replicas than hosts)."""

    name = "spread-group"

    def score(self, host: HostView, request: PlacementRequest) -> float:
        group = request.spread_group
        return 0.0 if group is not None and spread_member(group) in host.groups else 1.0

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        if request.spread_group is None:
            return np.ones(len(index.hosts), dtype=np.float64)
        result: FloatArray = np.where(index.has_group(spread_member(request.spread_group)),
                                      0.0, 1.0).astype(np.float64)
        return result


class MostFreeMemory:
    """Fraction of the host's (overcommitted) memory still free after this instance."""

    name = "most-free-memory"

    def __init__(self, overcommit: float) -> None:
        self.overcommit = overcommit

    def score(self, host: HostView, request: PlacementRequest) -> float:
        capacity = host.memory_bytes * self.overcommit
        if capacity <= 0:
            return 0.0
        free = capacity - host.memory_reserved_bytes - (request.memory_bytes or 0)
        return _clamp(free / capacity)

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        capacity = index.capacity("memory", self.overcommit)
        free = capacity - index.memory_reserved - (request.memory_bytes or 0)
        return _ratio(free, capacity)


class FewestTakenCores:
    """Fraction of the host's cores still in the shared pool after this instance."""

    name = "fewest-taken-cores"

    def score(self, host: HostView, request: PlacementRequest) -> float:
        if not host.cores:
            return 0.0
        left = len(shared_pool(host.cores, host.taken_cores, host.reserved_cores)) - request.cores
        return _clamp(left / len(set(host.cores)))

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        left = (index.free_cores - request.cores).astype(np.float64)
        return _ratio(left, index.cores.astype(np.float64))


class FewestInstances:
    """`1 / (1 + instances)`: what tells hosts apart when requests reserve nothing."""

    name = "fewest-instances"

    def score(self, host: HostView, request: PlacementRequest) -> float:
        return 1.0 / (1 + host.instances)

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        result: FloatArray = 1.0 / (1 + index.instances)
        return result


class SpreadWeigher:
    """Most headroom after the placement: the mean of the three weighers above."""

    name = "spread"

    def __init__(self, memory_overcommit: float) -> None:
        self.memory = MostFreeMemory(memory_overcommit)
        self.cores = FewestTakenCores()
        self.instances = FewestInstances()

    def score(self, host: HostView, request: PlacementRequest) -> float:
        return (self.memory.score(host, request) + self.cores.score(host, request)
                + self.instances.score(host, request)) / 3

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        total = self.memory.scores(index, request) + self.cores.scores(index, request)
        total += self.instances.scores(index, request)
        total /= 3
        return total


class PackWeigher:
    """Least headroom after the placement (`1 - spread`): fill hosts one after another."""

    name = "pack"

    def __init__(self, memory_overcommit: float) -> None:
        self.spread = SpreadWeigher(memory_overcommit)

    def score(self, host: HostView, request: PlacementRequest) -> float:
        return 1.0 - self.spread.score(host, request)

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        result: FloatArray = 1.0 - self.spread.scores(index, request)
        return result
