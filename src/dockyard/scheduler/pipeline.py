"""The placement pipeline: filters, then weighers, then the exclusive cores.

    hosts ─▶ filters (first rejection wins, its reason recorded) ─▶ feasible hosts
          ─▶ weighers (weighted average in [0, 1]) ─▶ best host (ties: name, then id)
          ─▶ cpusets.allocate_exclusive on it ─▶ Plan

Invariants:

* `place` and `explain` run the same `Pipeline`, so `explain` says exactly why `place`
  rejected each host;
* a host is judged by the first filter that rejects it; every host ends up either feasible
  or in `Plan.rejected` / the `NoValidHost` counts;
* the result depends only on the request and the snapshot (deterministic, no I/O).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.errors import NoValidHost
from dockyard.scheduler.cpusets import allocate_exclusive
from dockyard.scheduler.filters import (
    ExclusiveCores,
    Filter,
    HostUp,
    MemoryFits,
    NetworkOnHost,
    PidsFit,
    PinnedHost,
)
from dockyard.scheduler.snapshot import ClusterSnapshot, HostSnapshot, PlacementRequest, Plan
from dockyard.scheduler.weighers import FewestTakenCores, MostFreeMemory, Weigher

__all__ = ["Pipeline", "build_pipeline", "explain", "no_valid_host_message", "place"]


@dataclass(frozen=True)
class Pipeline:
    filters: tuple[Filter, ...]
    weighers: tuple[tuple[Weigher, float], ...]  # (weigher, weight > 0)

    def reject_reason(self, host: HostSnapshot, request: PlacementRequest) -> str | None:
        for check in self.filters:
            reason = check.feasible(host, request)
            if reason is not None:
                return reason
        return None

    def score(self, host: HostSnapshot, request: PlacementRequest) -> float:
        total = sum(weight for _, weight in self.weighers)
        if total <= 0:
            return 0.0
        return sum(w.score(host, request) * weight for w, weight in self.weighers) / total


def build_pipeline(memory_overcommit: float = 1.0) -> Pipeline:
    return Pipeline(
        filters=(
            # Pinning first: the other hosts are then rejected as "not the requested host"
            # rather than for whatever else happens to be wrong with them.
            PinnedHost(),
            # Liveness before capacity: a down host's ledger may be stale, and "host is down"
            # is the useful answer for it.
            HostUp(),
            NetworkOnHost(),
            MemoryFits(memory_overcommit),
            PidsFit(),
            # Last: the only filter doing set arithmetic, and its reason is the least obvious.
            ExclusiveCores(),
        ),
        weighers=(
            (MostFreeMemory(memory_overcommit), 1.0),
            (FewestTakenCores(), 1.0),
        ),
    )


def _plural_hosts(n: int) -> str:
    return "1 host" if n == 1 else f"{n} hosts"


def no_valid_host_message(reasons: Iterable[str]) -> str:
    """`"no valid host: 3 hosts: not enough memory; 1 host: not enough free cores"`.

    Most common reason first; equal counts in alphabetical order.
    """
    counts = Counter(reasons)
    if not counts:
        return "no valid host: the cluster has no hosts"
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "no valid host: " + "; ".join(f"{_plural_hosts(n)}: {r}" for r, n in ordered)


def _verdicts(
    pipeline: Pipeline, request: PlacementRequest, snapshot: ClusterSnapshot
) -> list[tuple[HostSnapshot, str | None]]:
    return [(host, pipeline.reject_reason(host, request)) for host in snapshot.hosts]


def explain(request: PlacementRequest, snapshot: ClusterSnapshot) -> list[tuple[str, str | None]]:
    """Each host's name with the reason it is rejected, or `None` if it could take the request.

    Hosts are listed in snapshot order.
    """
    pipeline = build_pipeline(snapshot.memory_overcommit)
    return [(host.name, reason) for host, reason in _verdicts(pipeline, request, snapshot)]


def place(request: PlacementRequest, snapshot: ClusterSnapshot) -> Plan:
    """Choose the best feasible host and its exclusive cores; `NoValidHost` if none fits."""
    pipeline = build_pipeline(snapshot.memory_overcommit)
    verdicts = _verdicts(pipeline, request, snapshot)
    feasible = [host for host, reason in verdicts if reason is None]
    rejected = {host.name: reason for host, reason in verdicts if reason is not None}
    if not feasible:
        raise NoValidHost(no_valid_host_message(r for _, r in verdicts if r is not None))
    scores = {host.name: pipeline.score(host, request) for host in feasible}
    best = min(feasible, key=lambda host: (-scores[host.name], host.name, host.id))
    cores = allocate_exclusive(best.cores, best.taken_cores, best.reserved_cores, request.cores)
    return Plan(host_id=best.id, host_name=best.name, cores=cores, rejected=rejected,
                scores=scores)
