"""What the scheduler reads and returns: plain, immutable data.

The server builds a `ClusterSnapshot` from the store (the capacity ledger) at one version and
hands it to `place`; the scheduler never reads anything else. A `Plan` is only a proposal: the
caller commits it under a version check and retries on conflict, so a snapshot that went stale
between `place` and the commit costs a retry, never a double booking.

Invariants checked at construction (`InvalidRequest` otherwise): request quantities are not
negative; overcommit ratios are positive; the strategy is "spread" or "pack".

`ClusterSnapshot.index()` is the snapshot as numpy arrays (`index.HostIndex`), built once and
cached on the snapshot, so that one snapshot serves many placements cheaply. Treat a snapshot
and its hosts as read-only once `index()` was called: the index would not see a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from dockyard.errors import InvalidRequest

if TYPE_CHECKING:
    from dockyard.scheduler.index import HostIndex

__all__ = ["ClusterSnapshot", "HostSnapshot", "PlacementRequest", "Plan", "Strategy"]

Strategy = Literal["spread", "pack"]
STRATEGIES: tuple[Strategy, ...] = ("spread", "pack")


@dataclass(frozen=True)
class HostSnapshot:
    """One host as the ledger sees it. `taken_cores` are held exclusively by instances."""

    id: str
    name: str
    up: bool
    draining: bool
    cores: list[int]
    reserved_cores: list[int]
    taken_cores: list[int]
    memory_bytes: int
    memory_reserved_bytes: int
    networks: set[str]
    labels: dict[str, str]
    pids_limit_total: int | None = None  # None: the host sets no pids budget
    pids_reserved: int = 0
    disk_bytes: int | None = None  # None: the host sets no disk budget
    disk_reserved_bytes: int = 0
    groups: frozenset[str] = frozenset()  # anti-affinity groups of the host's instances
    instances: int = 0


@dataclass(frozen=True)
class ClusterSnapshot:
    """All hosts at one ledger version, plus the cluster-wide overcommit ratios."""

    hosts: list[HostSnapshot]
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
            from dockyard.scheduler.index import HostIndex  # noqa: PLC0415 (it imports us)

            cached = HostIndex.build(self.hosts)
            self.with_index(cached)
        return cached

    def with_index(self, index: HostIndex) -> ClusterSnapshot:
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
    strategy: Strategy = "spread"
    disk_bytes: int | None = None  # None reserves nothing

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
