"""CPU sets: the kernel's list syntax and the choice of exclusive cores on a host.

A host's cores fall into three disjoint groups:

* **reserved**: kept for the system (dockerd, the agent); never handed out;
* **taken**: held exclusively by one instance (`--cores N`);
* **shared pool**: everything else; instances without exclusive cores run here.

Invariant kept by `allocate_exclusive`: after any allocation the shared pool is non-empty,
i.e. ``cores - taken - reserved - chosen`` has at least one core, so instances without
exclusive cores always have somewhere to run. Cores are chosen highest-numbered first so that
core 0, where the kernel and most system daemons land, tends to stay shared.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from dockyard.errors import InvalidRequest, NoCapacity
from dockyard.model.cpulist import parse_cpu_list

__all__ = ["allocate_exclusive", "format_cpuset", "parse_cpuset", "shared_pool"]


def parse_cpuset(spec: str) -> list[int]:
    """`"0-3,5"` -> `[0, 1, 2, 3, 5]` (`model.cpulist`); InvalidRequest for a bad list."""
    try:
        return parse_cpu_list(spec)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


def format_cpuset(cores: Iterable[int]) -> str:
    """`[0, 1, 2, 3, 5]` -> `"0-3,5"` (any order, duplicates ignored; `[]` -> `""`)."""
    ordered = sorted(set(cores))
    if ordered and ordered[0] < 0:
        raise InvalidRequest(f"core numbers cannot be negative: {ordered[0]}")
    parts: list[str] = []
    index = 0
    while index < len(ordered):
        start = end = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == end + 1:
            index += 1
            end = ordered[index]
        parts.append(str(start) if start == end else f"{start}-{end}")
        index += 1
    return ",".join(parts)


def shared_pool(
    cores: Sequence[int], taken: Collection[int], reserved: Collection[int]
) -> list[int]:
    """Cores neither taken exclusively nor reserved for the system, sorted.

    Non-empty as long as every exclusive allocation went through `allocate_exclusive` and the
    host's cores or reserved set did not shrink/grow afterwards. If an operator reconfigured
    the host so that it became empty, this returns `[]`; callers must treat that as a host
    misconfiguration rather than write an empty cpuset.
    """
    excluded = set(taken) | set(reserved)
    return sorted(core for core in set(cores) if core not in excluded)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def allocate_exclusive(
    cores: Sequence[int], taken: Collection[int], reserved: Collection[int], n: int
) -> list[int]:
    """Choose `n` free cores, highest-numbered first, returned sorted ascending.

    Raises `NoCapacity` when fewer than ``n + 1`` cores are free: one must stay in the shared
    pool (module invariant). `n == 0` returns `[]` without any check.
    """
    if n < 0:
        raise InvalidRequest(f"number of exclusive cores cannot be negative: {n}")
    if n == 0:
        return []
    free = shared_pool(cores, taken, reserved)
    if len(free) - n < 1:
        raise NoCapacity(
            f"asked for {_plural(n, 'exclusive core')}; {len(free)} free and at least one "
            "core must stay in the shared pool"
        )
    return free[-n:]
