"""What the scheduler reads and returns: plain, immutable data.

The server builds a `ClusterSnapshot` from the store (the capacity ledger) at one version and
hands it to `place`; the scheduler never reads anything else. A `Plan` is only a proposal: the
caller commits it under a version check and retries on conflict, so a snapshot that went stale
between `place` and the commit costs a retry, never a double booking.

Invariants checked at construction (`InvalidRequest` otherwise): request quantities are not
negative; the memory overcommit ratio is positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import InvalidRequest

__all__ = ["ClusterSnapshot", "HostSnapshot", "PlacementRequest", "Plan"]


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


@dataclass(frozen=True)
class ClusterSnapshot:
    """All hosts at one ledger version, plus the cluster-wide memory overcommit ratio."""

    hosts: list[HostSnapshot]
    memory_overcommit: float = 1.0

    def __post_init__(self) -> None:
        if not self.memory_overcommit > 0:
            raise InvalidRequest(
                f"memory overcommit ratio must be positive, not {self.memory_overcommit}")


@dataclass(frozen=True)
class PlacementRequest:
    """What one instance needs. `memory_bytes=None` means no limit and reserves nothing."""

    cores: int  # exclusive cores; 0 runs in the host's shared pool
    memory_bytes: int | None
    pids: int  # 0 reserves nothing
    network_id: str
    host: str | None = None  # pin to the host with this name

    def __post_init__(self) -> None:
        for what, value in (("cores", self.cores), ("memory", self.memory_bytes or 0),
                            ("pids", self.pids)):
            if value < 0:
                raise InvalidRequest(f"{what} cannot be negative: {value}")


@dataclass(frozen=True)
class Plan:
    """The chosen host and exclusive cores, with why every other host lost."""

    host_id: str
    host_name: str
    cores: list[int]
    rejected: dict[str, str] = field(default_factory=dict)  # host name -> reason
    scores: dict[str, float] = field(default_factory=dict)  # feasible host name -> score
