"""What the scheduler reads and returns: plain, immutable data.

The server builds a `ClusterView` from the store (the capacity ledger) at one version and
hands it to `place`; the scheduler never reads anything else. A `Plan` is only a proposal: the
caller commits it under a version check and retries on conflict, so a view that went stale
between `place` and the commit costs a retry, never a double booking.

Invariants checked at construction (`InvalidRequest` otherwise): request quantities are not
negative; overcommit ratios are positive; the strategy is "spread" or "pack".

`ClusterView.index()` is the view as numpy arrays (`index.HostIndex`), built once and
cached on the view, so that one view serves many placements cheaply. Treat a view
and its hosts as read-only once `index()` was called: the index would not see a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dockyard.errors import InvalidRequest
from dockyard.scheduler.host_view import HostView
from dockyard.scheduler.index import HostIndex

__all__ = ["ClusterView", "HostView", "PlacementRequest", "Plan", "Strategy"]

Strategy = Literal["spread", "pack"]
STRATEGIES: tuple[Strategy, ...] = ("spread", "pack")


@dataclass(frozen=True)
class ClusterView:
    """All hosts at one ledger version, plus the cluster-wide overcommit ratios."""

    hosts: list[HostView]
    memory_overcommit: float = 1.0
    disk_overcommit: float = 1.0
    pids_overcommit: float = 1.0

    def __post_init__(self) -> None:
        for what, ratio in (("memory", self.memory_overcommit), ("disk", self.disk_overcommit),
                            ("pids", self.pids_overcommit)):
            if not ratio > 0:
                raise InvalidRequest(f"{what} overcommit ratio must be positive, not {ratio}")

    def index(self) -> HostIndex:
        """The hosts as arrays for the vectorized filters; built on first use, then cached."""
        cached: HostIndex | None = self.__dict__.get("_index")
        if cached is None:
            cached = HostIndex.build(self.hosts)
            self.with_index(cached)
        return cached

    def with_index(self, index: HostIndex) -> ClusterView:
        """Attach an index built elsewhere (`pipeline.assume` updates one incrementally)."""
        object.__setattr__(self, "_index", index)  # a cache, not state: frozen stays frozen
        return self


@dataclass(frozen=True)
class PlacementRequest:
    """What one instance needs. `memory_bytes=None` means no limit and reserves nothing."""

    cores: int  # exclusive cores; 0 runs in the host's shared pool
    memory_bytes: int | None
    pids: int  # 0 reserves nothing
    network_id: str
    host: str | None = None  # pin to the host with this name
    constraints: dict[str, str] = field(default_factory=dict)  # host label key -> value
    anti_affinity: str | None = None  # never two instances of this group on one host
    spread_group: str | None = None  # rather a host without an instance of this group
    strategy: Strategy = "spread"
    disk_bytes: int | None = None  # None reserves nothing
    vm: bool = False  # a VM: only hosts that run VMs; its memory is never over-committed

    def __post_init__(self) -> None:
        for what, value in (("cores", self.cores), ("memory", self.memory_bytes or 0),
                            ("pids", self.pids), ("disk", self.disk_bytes or 0)):
            if value < 0:
                raise InvalidRequest(f"{what} cannot be negative: {value}")
        if self.strategy not in STRATEGIES:
            raise InvalidRequest(f"strategy must be spread or pack, not {self.strategy!r}")


@dataclass(frozen=True)
class Plan:
    """The chosen host and exclusive cores, with how many hosts each filter rejected.

    Per-host verdicts are `pipeline.explain`'s job: at 10,000 hosts a plan naming every host
    would cost more than the placement.
    """

    host_id: str
    host_name: str
    cores: list[int]
    score: float = 0.0
    feasible: int = 1  # hosts that passed every filter
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> number of hosts
