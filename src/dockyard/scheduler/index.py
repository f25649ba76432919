"""The view as numpy arrays, so that one placement is a few dozen array operations.

At 10,000 hosts a Python loop over `HostView`s costs milliseconds per filter; the same
checks over arrays cost microseconds. `HostIndex.build` walks the hosts once per view
(`ClusterView.index()` caches it); masks that depend on the request (a network, a label,
an anti-affinity group) are built on first use and memoized on the index.

Invariants:

* position `i` of every array is `hosts[i]`, in view order;
* `rank[i]` is host `i`'s position when sorted by (name, id): the tie-break of `place`;
* a missing budget (disk or pids `None`) is an infinite capacity, so its filter never rejects;
* arrays are never written after construction: `with_placement` copies the ones it changes
  and shares the others (copy-on-write), so an older index stays valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from dockyard.scheduler.host_view import HostView

__all__ = ["BoolArray", "FloatArray", "HostIndex"]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _ints(values: list[int]) -> IntArray:
    return np.asarray(values, dtype=np.int64)


def _rank(hosts: list[HostView]) -> IntArray:
    order = sorted(range(len(hosts)), key=lambda i: (hosts[i].name, hosts[i].id))
    rank = np.empty(len(hosts), dtype=np.int64)
    rank[order] = np.arange(len(hosts), dtype=np.int64)
    return rank


def _inf(value: int | None) -> float:
    return np.inf if value is None else float(value)


# array field -> (dtype, its value for one host): what `build` and `with_hosts` both compute
_COLUMNS: dict[str, tuple[type, Callable[[HostView], object]]] = {
    "down": (np.bool_, lambda h: not h.up),
    "draining": (np.bool_, lambda h: h.draining),
    "memory": (np.float64, lambda h: float(h.memory_bytes)),
    "memory_reserved": (np.int64, lambda h: h.memory_reserved_bytes),
    "disk": (np.float64, lambda h: _inf(h.disk_bytes)),
    "disk_reserved": (np.int64, lambda h: h.disk_reserved_bytes),
    "pids": (np.float64, lambda h: _inf(h.pids_limit_total)),
    "pids_reserved": (np.int64, lambda h: h.pids_reserved),
    "cores": (np.int64, lambda h: len(set(h.cores))),
    "free_cores": (np.int64,
                   lambda h: len(set(h.cores) - set(h.taken_cores) - set(h.reserved_cores))),
    "instances": (np.int64, lambda h: h.instances),
    "vm": (np.bool_, lambda h: h.vm),
}


@dataclass(frozen=True, eq=False)
class HostIndex:
    hosts: list[HostView]
    position: dict[str, int]  # host name -> position
    rank: IntArray
    down: BoolArray
    draining: BoolArray
    memory: FloatArray
    memory_reserved: IntArray
    disk: FloatArray  # inf: no budget
    disk_reserved: IntArray
    pids: FloatArray  # inf: no budget
    pids_reserved: IntArray
    cores: IntArray  # distinct cores of the host
    free_cores: IntArray  # size of the shared pool (cpusets.shared_pool)
    instances: IntArray
    vm: BoolArray  # hosts that run VM instances
    members: dict[str, tuple[int, ...]]  # anti-affinity group -> positions of its hosts
    _networks: dict[str, BoolArray] = field(default_factory=dict)
    _labels: dict[str, tuple[dict[str, int], IntArray]] = field(default_factory=dict)
    _groups: dict[str, BoolArray] = field(default_factory=dict)
    _capacities: dict[tuple[str, float], FloatArray] = field(default_factory=dict)

    @classmethod
    def build(cls, hosts: list[HostView]) -> HostIndex:
        members: dict[str, list[int]] = {}
        for position, host in enumerate(hosts):
            for group in host.groups:
                members.setdefault(group, []).append(position)
        columns: dict[str, Any] = {name: np.asarray([value(h) for h in hosts], dtype=dtype)
                                   for name, (dtype, value) in _COLUMNS.items()}
        return cls(hosts=list(hosts), position={h.name: i for i, h in enumerate(hosts)},
                   rank=_rank(hosts),
                   members={group: tuple(positions) for group, positions in members.items()},
                   **columns)

    def with_hosts(self, changed: dict[int, HostView]) -> HostIndex:
        """The index after `hosts[p]` became `changed[p]` for each p (the same hosts in the
        same order: a host added or removed needs `build`). Equal to `build` on the new list;
        costs O(len(changed)) per array plus one copy of each array, and keeps the memoized
        masks, patched at those positions (a group's mask: kept unless a changed host joined or
        left the group)."""
        if not changed:
            return self
        hosts = list(self.hosts)
        for p, host in changed.items():
            hosts[p] = host
        columns: dict[str, Any] = {}
        for name, (_, value) in _COLUMNS.items():
            array = getattr(self, name).copy()
            for p, host in changed.items():
                array[p] = value(host)
            columns[name] = array
        renamed = any(self.hosts[p].name != h.name for p, h in changed.items())
        # only the groups a changed host joined or left: O(changed), not O(every membership)
        members, group_masks = dict(self.members), dict(self._groups)
        for p, host in changed.items():
            for group in self.hosts[p].groups ^ host.groups:
                positions = set(members.get(group, ()))
                if group in host.groups:
                    positions.add(p)
                else:
                    positions.discard(p)
                if positions:
                    members[group] = tuple(sorted(positions))
                else:
                    members.pop(group, None)
                group_masks.pop(group, None)  # built again from `members` on use
        networks = {}
        for network_id, mask in self._networks.items():
            networks[network_id] = mask.copy()
            for p, host in changed.items():
                networks[network_id][p] = network_id in host.networks
        labels = {}
        for key, (codes, array) in self._labels.items():
            codes, array = dict(codes), array.copy()
            for p, host in changed.items():
                v = host.labels.get(key)
                array[p] = -1 if v is None else codes.setdefault(v, len(codes))
            labels[key] = (codes, array)
        return replace(
            self, hosts=hosts,
            position={h.name: i for i, h in enumerate(hosts)} if renamed else self.position,
            rank=_rank(hosts) if renamed else self.rank,
            members=members, _networks=networks, _labels=labels, _groups=group_masks,
            _capacities={}, **columns)

    def __len__(self) -> int:
        return len(self.hosts)

    def capacity(self, what: str, ratio: float) -> FloatArray:
        """`memory`, `disk` or `pids` budget × overcommit ratio (memoized per ratio)."""
        key = (what, ratio)
        cached = self._capacities.get(key)
        if cached is None:
            base: FloatArray = getattr(self, what)
            cached = self._capacities[key] = base * ratio
        return cached

    def on_network(self, network_id: str) -> BoolArray:
        cached = self._networks.get(network_id)
        if cached is None:
            cached = np.asarray([network_id in h.networks for h in self.hosts], dtype=np.bool_)
            self._networks[network_id] = cached
        return cached

    def label_is(self, key: str, value: str) -> BoolArray:
        """Hosts whose label `key` equals `value` (hosts without the label: False)."""
        coded = self._labels.get(key)
        if coded is None:
            codes: dict[str, int] = {}
            values = [h.labels.get(key) for h in self.hosts]
            array = _ints([-1 if v is None else codes.setdefault(v, len(codes)) for v in values])
            coded = self._labels[key] = (codes, array)
        codes, array = coded
        code = codes.get(value)
        if code is None:
            return np.zeros(len(self.hosts), dtype=np.bool_)
        result: BoolArray = array == code
        return result

    def has_group(self, group: str) -> BoolArray:
        cached = self._groups.get(group)
        if cached is None:
            # from the inverted index, not the hosts: a new group costs microseconds
            cached = np.zeros(len(self.hosts), dtype=np.bool_)
            cached[list(self.members.get(group, ()))] = True
            self._groups[group] = cached
        return cached

    def best(self, feasible: BoolArray, scores: FloatArray) -> int:
        """Position of the highest score among feasible hosts; ties: lowest (name, id)."""
        masked = np.where(feasible, scores, -np.inf)
        top = np.flatnonzero(masked == masked.max())
        if len(top) == 1:
            return int(top[0])
        return int(top[np.argmin(self.rank[top])])

    def with_placement(self, position: int, host: HostView, cores: int) -> HostIndex:
        """The index after `hosts[position]` became `host`, which took `cores` more cores.

        Copies only the arrays a placement changes; the memoized masks that cannot change
        (networks, labels) are shared with this index.
        """
        old = self.hosts[position]
        hosts = list(self.hosts)
        hosts[position] = host

        def bumped(array: IntArray, new: int) -> IntArray:
            copy = array.copy()
            copy[position] = new
            return copy

        groups, members = dict(self._groups), dict(self.members)
        for group in host.groups - old.groups:
            members[group] = (*members.get(group, ()), position)
            if group in groups:
                groups[group] = groups[group].copy()
                groups[group][position] = True
        return replace(
            self, hosts=hosts, members=members, _groups=groups,
            memory_reserved=bumped(self.memory_reserved, host.memory_reserved_bytes),
            disk_reserved=bumped(self.disk_reserved, host.disk_reserved_bytes),
            pids_reserved=bumped(self.pids_reserved, host.pids_reserved),
            free_cores=bumped(self.free_cores, int(self.free_cores[position]) - cores),
            instances=bumped(self.instances, host.instances))
