"""One host as the scheduler sees it: plain, immutable data.

Its own module so that `index.py` (which turns hosts into arrays) and `view.py` (whose
`ClusterView` caches an index) import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HostView"]


@dataclass(frozen=True)
class HostView:
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
    vm: bool = False  # the agent can run VM instances (KVM, or emulation the operator chose)
