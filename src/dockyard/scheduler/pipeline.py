"""The placement pipeline: filters, then weighers, then the exclusive cores.

    hosts ─▶ filters (first rejection wins, its reason counted) ─▶ feasible hosts
          ─▶ weigher of the strategy (spread | pack; score in [0, 1]) ─▶ best host
             (ties: name, then id) ─▶ cpusets.allocate_exclusive on it ─▶ Plan

Invariants:

* `place` and `explain` run the same `Pipeline` through the same vectorized code
  (`_judge`), so `explain` says exactly why `place` rejected each host;
* a host is judged by the first filter that rejects it; every host ends up either feasible
  or counted under exactly one reason in `Plan.rejected` / the `NoValidHost` message;
* the result depends only on the request and the view (deterministic, no I/O);
* `Pipeline.reject_reason` / `Pipeline.score` are the per-host specification of the same
  checks (tests hold the vectorized form to it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from dockyard.errors import NoValidHost
from dockyard.scheduler.cpusets import allocate_exclusive
from dockyard.scheduler.filters import (
    AntiAffinityFilter,
    ConstraintFilter,
    DiskFits,
    ExclusiveCores,
    Filter,
    HostUp,
    MemoryFits,
    NetworkOnHost,
    PidsFit,
    PinnedHost,
    VmCapable,
)
from dockyard.scheduler.index import BoolArray, FloatArray, HostIndex
from dockyard.scheduler.view import (
    ClusterView,
    HostView,
    PlacementRequest,
    Plan,
    Strategy,
)
from dockyard.scheduler.weighers import (
    GroupSpreadWeigher,
    PackWeigher,
    SpreadWeigher,
    Weigher,
    spread_member,
)

__all__ = ["HostVerdict", "Pipeline", "assume", "build_pipeline", "explain",
           "no_valid_host_message", "place"]


@dataclass(frozen=True)
class HostVerdict:
    """One host in `explain`: why it was rejected (`None`: it fits) and its score if it fits."""

    name: str
    reason: str | None
    score: float | None


@dataclass(frozen=True)
class Pipeline:
    filters: tuple[Filter, ...]
    weighers: tuple[tuple[Weigher, float], ...]  # (weigher, weight > 0)

    def reject_reason(self, host: HostView, request: PlacementRequest) -> str | None:
        for check in self.filters:
            reason = check.feasible(host, request)
            if reason is not None:
                return reason
        return None

    def score(self, host: HostView, request: PlacementRequest) -> float:
        total = sum(weight for _, weight in self.weighers)
        if total <= 0:
            return 0.0
        return sum(w.score(host, request) * weight for w, weight in self.weighers) / total

    def scores(self, index: HostIndex, request: PlacementRequest) -> FloatArray:
        """`score` for every host at once (same operations, same order)."""
        total = sum(weight for _, weight in self.weighers)
        if total <= 0:
            return np.zeros(len(index), dtype=np.float64)
        acc: FloatArray = np.zeros(len(index), dtype=np.float64)
        for weigher, weight in self.weighers:
            acc = acc + weigher.scores(index, request) * weight
        result: FloatArray = acc / total
        return result


GROUP_SPREAD_WEIGHT = 4.0  # above the strategy's 1.0: the group decides, capacity breaks ties


@lru_cache(maxsize=64)
def build_pipeline(strategy: Strategy = "spread", memory_overcommit: float = 1.0,
                   disk_overcommit: float = 1.0, pids_overcommit: float = 1.0,
                   spread_group: bool = False) -> Pipeline:
    weigher: Weigher = (PackWeigher(memory_overcommit) if strategy == "pack"
                        else SpreadWeigher(memory_overcommit))
    return Pipeline(
        filters=(
            # Pinning first: the other hosts are then rejected as "not the requested host"
            # rather than for whatever else happens to be wrong with them.
            PinnedHost(),
            # Liveness before capacity: a down host's ledger may be stale, and "host is down"
            # is the useful answer for it.
            HostUp(),
            NetworkOnHost(),
            VmCapable(),
            # Placement rules the user wrote come before capacity: "constraint zone=eu not
            # met" is the answer for a host in the wrong zone, full or not.
            ConstraintFilter(),
            AntiAffinityFilter(),
            MemoryFits(memory_overcommit),
            DiskFits(disk_overcommit),
            PidsFit(pids_overcommit),
            # Last: the only filter doing set arithmetic, and its reason is the least obvious.
            ExclusiveCores(),
        ),
        weighers=((weigher, 1.0), *(((GroupSpreadWeigher(), GROUP_SPREAD_WEIGHT),)
                                    if spread_group else ())),
    )


def _pipeline_for(request: PlacementRequest, view: ClusterView) -> Pipeline:
    return build_pipeline(request.strategy, view.memory_overcommit,
                          view.disk_overcommit, view.pids_overcommit,
                          request.spread_group is not None)


def _plural_hosts(n: int) -> str:
    return "1 host" if n == 1 else f"{n} hosts"


def no_valid_host_message(counts: Mapping[str, int]) -> str:
    """`"no valid host: 3 hosts: not enough memory; 1 host: not enough free cores"`.

    `counts` is hosts per reason. Most common reason first; equal counts in alphabetical order.
    """
    ordered = sorted(((r, n) for r, n in counts.items() if n > 0),
                     key=lambda item: (-item[1], item[0]))
    if not ordered:
        return "no valid host: the cluster has no hosts"
    return "no valid host: " + "; ".join(f"{_plural_hosts(n)}: {r}" for r, n in ordered)


def _judge(pipeline: Pipeline, index: HostIndex,
           request: PlacementRequest) -> Iterator[tuple[str, BoolArray, int]]:
    """Run the filters in order; yield each reason with the hosts it newly rejects and how
    many. A host already rejected by an earlier check is not counted again. The last item
    is `("", feasible hosts, their number)`."""
    alive: BoolArray = np.ones(len(index), dtype=np.bool_)
    for check in pipeline.filters:
        for reason, rejects in check.rejects(index, request):
            newly = rejects & alive
            count = int(np.count_nonzero(newly))
            if count:
                alive ^= newly
                yield reason, newly, count
    yield "", alive, int(np.count_nonzero(alive))


def explain(request: PlacementRequest, view: ClusterView) -> list[HostVerdict]:
    """Each host, in view order, with the reason it is rejected or its score."""
    index = view.index()
    pipeline = _pipeline_for(request, view)
    reasons: list[str | None] = [None] * len(index)
    for reason, hosts, _ in _judge(pipeline, index, request):
        if reason:
            for position in np.flatnonzero(hosts):
                reasons[position] = reason
    scores = pipeline.scores(index, request)
    return [HostVerdict(host.name, reason, None if reason else float(scores[i]))
            for i, (host, reason) in enumerate(zip(index.hosts, reasons, strict=True))]


def place(request: PlacementRequest, view: ClusterView) -> Plan:
    """Choose the best feasible host and its exclusive cores; `NoValidHost` if none fits."""
    index = view.index()
    pipeline = _pipeline_for(request, view)
    rejected: dict[str, int] = {}
    feasible, count = None, 0
    for reason, hosts, n in _judge(pipeline, index, request):
        if reason:
            rejected[reason] = n
        else:
            feasible, count = hosts, n
    if feasible is None or count == 0:
        raise NoValidHost(no_valid_host_message(rejected))
    scores = pipeline.scores(index, request)
    position = index.best(feasible, scores)
    best = index.hosts[position]
    cores = allocate_exclusive(best.cores, best.taken_cores, best.reserved_cores, request.cores)
    return Plan(host_id=best.id, host_name=best.name, cores=cores,
                score=float(scores[position]), feasible=count, rejected=rejected)


def assume(view: ClusterView, plan: Plan, request: PlacementRequest) -> ClusterView:
    """The view as if `plan` were committed: its host holds the request's resources.

    For callers placing many instances against one view (a batch, the benchmark); the
    index is updated incrementally rather than rebuilt.
    """
    index = view.index()
    position = index.position[plan.host_name]
    old = index.hosts[position]
    groups = old.groups | {request.anti_affinity} if request.anti_affinity else old.groups
    if request.spread_group:
        groups = groups | {spread_member(request.spread_group)}
    host = replace(
        old, taken_cores=sorted([*old.taken_cores, *plan.cores]),
        memory_reserved_bytes=old.memory_reserved_bytes + (request.memory_bytes or 0),
        disk_reserved_bytes=old.disk_reserved_bytes + (request.disk_bytes or 0),
        pids_reserved=old.pids_reserved + request.pids, groups=groups,
        instances=old.instances + 1)
    hosts = list(view.hosts)
    hosts[position] = host
    after = replace(view, hosts=hosts)
    return after.with_index(index.with_placement(position, host, len(plan.cores)))
