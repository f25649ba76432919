"""The one placement step of create, resize, migrate and evacuate, and the scheduler's view of
the cluster it places on (read from the store, cached per capacity stamp).

    placing(db, work) ── a transaction of its own; lost a race (RetryableConflict)? jittered
      │                  backoff, run `work` again from a fresh read (PLACEMENT_ATTEMPTS)
      ▼
    work(sess) ─▶ reserve(sess, settings, request, instance):
                    cluster_view ─▶ scheduler.place ─▶ host version CAS ─▶ cores reserved
                  ─▶ the caller's own rows (IP, instance, operation …) in the same transaction

`request_for` is the one builder of a `PlacementRequest`: from an instance's `Limits` and its
placement options as stored on its row. A resize places the instance on its own host in a view
without the instance (`Resident`), so launch and resize apply the same filters and overcommit
ratios.
"""

from __future__ import annotations

import ipaddress
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.errors import NoCapacity, NoValidHost
from dockyard.model.instance import Limits, reservations
from dockyard.model.units import format_size
from dockyard.scheduler import ClusterView, HostView, PlacementRequest, Plan, explain, place
from dockyard.scheduler.cpusets import allocate_exclusive, parse_cpuset
from dockyard.scheduler.filters import REASON_CORES, REASON_MEMORY, REASON_PIDS
from dockyard.scheduler.weighers import spread_member
from dockyard.store import hosts as host_rows
from dockyard.store import instances as instance_rows
from dockyard.store import ledger
from dockyard.store import networks as network_rows
from dockyard.store.db import Database
from dockyard.store.records import as_utc
from dockyard.store.tables import HostRow


def host_is_up(row: HostRow | host_rows.Capacity, timeout: float) -> bool:
    if row.last_heartbeat is None:
        return False
    return as_utc(row.last_heartbeat) > datetime.now(UTC) - timedelta(seconds=timeout)


def _instance_totals(sess: Session,
                     hosts: set[str] | None = None) -> dict[str, tuple[int, int, int, set[str]]]:
    """host id -> (memory reserved, pids reserved, instances, anti-affinity groups), for
    every host or only `hosts`."""
    totals: dict[str, tuple[int, int, int, set[str]]] = {}
    for host_id, limits, options in instance_rows.placed(sess, hosts):
        memory, pids, count, groups = totals.get(host_id, (0, 0, 0, set()))
        group = (options or {}).get("anti_affinity")
        if group:
            groups.add(str(group))
        spread = (options or {}).get("spread_group")
        if spread:
            groups.add(spread_member(str(spread)))
        held = reservations(limits)
        totals[host_id] = (memory + held.memory_bytes, pids + held.pids, count + 1, groups)
    return totals


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def effective_labels(row: HostRow | host_rows.Capacity) -> dict[str, str]:
    """The agent's labels (`inventory.labels`, from its registration) overridden by those
    given at `host add` (`hosts.labels`)."""
    agent = row.inventory.get("labels") or {}
    return {str(k): str(v) for k, v in {**agent, **(row.labels or {})}.items()}


DOWN_RECHECK = 1.0  # seconds: how late a host that came back up may be seen up


@dataclass(frozen=True)
class _Liveness:
    """The down hosts as read at `read_at`, valid until `until`: the earliest moment a host
    that was up could miss its heartbeat timeout (heartbeats only move later), or
    DOWN_RECHECK after the read, whichever comes first. So a host going down is never
    missed; one coming back up is seen within DOWN_RECHECK."""

    down: frozenset[str]
    until: datetime
    timeout: float

    @classmethod
    def read(cls, sess: Session, timeout: float) -> _Liveness:
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=timeout)
        down = host_rows.silent_since(sess, cutoff)
        oldest = host_rows.oldest_heartbeat_after(sess, cutoff)
        until = now + timedelta(seconds=DOWN_RECHECK)
        if oldest is not None:
            until = min(until, as_utc(oldest) + timedelta(seconds=timeout))
        return cls(down=down, until=until, timeout=timeout)

    def current(self, sess: Session, timeout: float) -> _Liveness:
        return self if datetime.now(UTC) < self.until else _Liveness.read(sess, timeout)


@dataclass(frozen=True)
class _Store:
    """What one read of the store gives for a set of hosts (all of them, or the touched)."""

    rows: list[host_rows.Capacity]
    totals: dict[str, tuple[int, int, int, set[str]]]
    taken: dict[str, list[int]]
    networks: set[str]

    @classmethod
    def read(cls, sess: Session, networks: set[str], hosts: set[str] | None = None) -> _Store:
        return cls(rows=host_rows.capacity_of(sess, hosts),
                   totals=_instance_totals(sess, hosts),
                   taken=ledger.cores_by_host(sess, hosts), networks=networks)

    def host(self, row: host_rows.Capacity, down: frozenset[str]) -> HostView:
        inv = row.inventory
        memory, pids, count, groups = self.totals.get(row.id, (0, 0, 0, set()))
        return HostView(
            id=row.id, name=row.name, up=row.id not in down,
            draining=row.draining, cores=list(inv.get("cores", [])),
            reserved_cores=list(row.reserved_cores),
            taken_cores=sorted(self.taken.get(row.id, [])),
            memory_bytes=int(inv.get("memory_bytes", 0)), memory_reserved_bytes=memory,
            networks=self.networks, labels=effective_labels(row),
            pids_limit_total=_optional_int(inv.get("pid_max")), pids_reserved=pids,
            disk_bytes=_optional_int(inv.get("disk_bytes")), groups=frozenset(groups),
            instances=count, vm=bool(inv.get("vm_accel")))


class _Versions(Mapping[str, int]):
    """Host id -> version as one cached view read them: the versions of the view it was
    patched from, shared, plus the hosts re-read since (merged into a new base now and then).
    A refresh costs O(hosts re-read), not a copy of every host's version, and the versions
    an older view handed to a placement in flight never change under it."""

    MERGE_AFTER = 256  # hosts re-read before the patch is folded into a new base

    def __init__(self, base: dict[str, int], patch: dict[str, int] | None = None) -> None:
        self._base, self._patch = base, patch or {}

    def patched(self, changes: dict[str, int]) -> _Versions:
        patch = {**self._patch, **changes}
        if len(patch) > self.MERGE_AFTER:
            return _Versions({**self._base, **patch})
        return _Versions(self._base, patch)

    def __getitem__(self, host_id: str) -> int:
        if host_id in self._patch:
            return self._patch[host_id]
        return self._base[host_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)  # a patched host is one of the base's (same hosts, in place)

    def __len__(self) -> int:
        return len(self._base)


@dataclass(frozen=True)
class _Cached:
    """A view at one capacity stamp, with the host versions and down set it was read at."""

    key: tuple[float, float, float, int]  # overcommit ratios, ledger.cache_epoch
    stamp: int
    view: ClusterView
    versions: _Versions
    positions: dict[str, int]  # host id -> position in view.hosts
    liveness: _Liveness


_cache: weakref.WeakKeyDictionary[Engine, _Cached] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
stats = {"hits": 0, "refreshed": 0, "rebuilt": 0}  # for tests and the benchmark


def _rebuild(sess: Session, key: tuple[float, float, float, int], stamp: int,
             liveness: _Liveness, settings: ServerSettings) -> _Cached:
    store = _Store.read(sess, network_rows.ids(sess))
    hosts = [store.host(row, liveness.down) for row in store.rows]
    view = ClusterView(hosts=hosts, memory_overcommit=settings.memory_overcommit,
                           disk_overcommit=settings.disk_overcommit,
                           pids_overcommit=settings.pids_overcommit)
    view.index()
    return _Cached(key=key, stamp=stamp, view=view,
                   versions=_Versions({row.id: row.version for row in store.rows}),
                   positions={h.id: i for i, h in enumerate(hosts)}, liveness=liveness)


def _refresh(sess: Session, cached: _Cached, stamp: int, touched: set[str],
             liveness: _Liveness) -> _Cached:
    """`cached` brought to `stamp` by re-reading only the `touched` hosts, and to the current
    heartbeats by flipping `up` on the hosts whose state changed."""
    old, down = cached.view.hosts, liveness.down
    networks = old[0].networks if old else set()
    store = _Store.read(sess, networks, touched) if touched else None
    changed: dict[int, HostView] = {}
    versions = cached.versions
    if store is not None:
        # a touched host's own row says whether it is up (its heartbeat may have been set back)
        timeout = liveness.timeout
        down = ((down - {row.id for row in store.rows})
                | {row.id for row in store.rows if not host_is_up(row, timeout)})
        until = min([liveness.until, *(as_utc(row.last_heartbeat) + timedelta(seconds=timeout)
                                       for row in store.rows
                                       if row.id not in down and row.last_heartbeat)])
        liveness = replace(liveness, down=down, until=until)
        versions = versions.patched({row.id: row.version for row in store.rows})
        for row in store.rows:
            changed[cached.positions[row.id]] = store.host(row, down)
    for host_id in cached.liveness.down ^ down:
        position = cached.positions.get(host_id)
        if position is not None and position not in changed:
            changed[position] = replace(old[position], up=host_id not in down)
    if not changed:
        return replace(cached, stamp=stamp, liveness=liveness)
    index = cached.view.index().with_hosts(changed)  # its host list is the view's: no copy
    view = replace(cached.view, hosts=index.hosts).with_index(index)
    return replace(cached, stamp=stamp, view=view, versions=versions, liveness=liveness)


def cluster_view(sess: Session,
                 settings: ServerSettings) -> tuple[ClusterView, Mapping[str, int]]:
    """The cluster as the scheduler sees it, plus each host's version for the commit.

    Disk and pids budgets come from the inventory when the agent reports them (`disk_bytes`,
    `pid_max`); a host without them has no such budget.

    Cached per database: the store's capacity stamp (`ledger.capacity_stamp`, bumped by every
    transaction that changes a host, an instance's placement or limits, a core or a network)
    says whether the last view is current; when this process wrote the stamps since, only
    the hosts they touched are re-read and patched into the index (`HostIndex.with_hosts`),
    otherwise everything is rebuilt. Which hosts are down is re-read when a host may have
    timed out since, and at least every DOWN_RECHECK seconds (`_Liveness`).
    A cache gone stale anyway can cost a retry, never a double booking: the commit's version
    CAS (`ledger.commit_placement`) rejects the plan and drops the cache.
    """
    engine = ledger.session_engine(sess)
    key = (settings.memory_overcommit, settings.disk_overcommit, settings.pids_overcommit,
           ledger.cache_epoch(engine))
    stamp = ledger.capacity_stamp(sess)
    with _cache_lock:
        cached = _cache.get(engine)
    touched = None
    if cached is not None and cached.key == key and cached.stamp <= stamp:
        touched = (set() if cached.stamp == stamp
                   else ledger.touched_since(engine, cached.stamp, stamp))
    if cached is None or touched is None or not touched <= cached.positions.keys():
        fresh = _rebuild(sess, key, stamp, _Liveness.read(sess, settings.heartbeat_timeout),
                         settings)
        stats["rebuilt"] += 1
    else:
        liveness = cached.liveness.current(sess, settings.heartbeat_timeout)
        fresh = _refresh(sess, cached, stamp, touched, liveness)
        stats["refreshed" if touched else "hits"] += 1
    with _cache_lock:
        current = _cache.get(engine)
        if current is None or current.key != key or current.stamp <= stamp:
            _cache[engine] = fresh
    return fresh.view, fresh.versions  # both immutable: the next refresh makes new ones


def prefixlen(subnet: str) -> int:
    return ipaddress.IPv4Network(subnet).prefixlen


# -- the placement step ------------------------------------------------------------------------

PLACEMENT_ATTEMPTS = 40  # lost version checks under contention (PostgreSQL, many servers)
PLACEMENT_BACKOFF = 0.005  # seconds, doubled per lost attempt (capped by store.db)

T = TypeVar("T")


def placing(db: Database, work: Callable[[Session], T]) -> T:
    """`work(sess)` in a transaction of its own (`Database.transact`), run again when it loses
    a race to a concurrent writer (`RetryableConflict`: the version CAS, a core or an address
    taken meanwhile, a serialization failure) — more often than other work, since placements
    contend on the same hosts' versions. Any other error, and the last lost race, goes to the
    caller."""
    return db.transact(work, attempts=PLACEMENT_ATTEMPTS, backoff=PLACEMENT_BACKOFF)


def request_for(limits: Limits, network_id: str, options: Mapping[str, object],
                host: str | None = None, vm: bool = False) -> PlacementRequest:
    """What an instance with these limits needs, under its placement options as its row
    stores them (`constraints`, `anti_affinity`, `spread_group`, `strategy`); `host` pins
    it; `vm`: a VM instance (a host that runs VMs, memory without over-commit)."""
    need = limits.reservation()
    constraints = options.get("constraints")
    group = options.get("anti_affinity")
    spread = options.get("spread_group")
    return PlacementRequest(
        cores=need.cores, memory_bytes=limits.memory_bytes, pids=need.pids,
        network_id=network_id, host=host,
        constraints=({str(k): str(v) for k, v in constraints.items()}
                     if isinstance(constraints, Mapping) else {}),
        anti_affinity=None if group is None else str(group),
        spread_group=None if spread is None else str(spread),
        strategy="pack" if options.get("strategy") == "pack" else "spread", vm=vm)


@dataclass(frozen=True)
class Resident:
    """An instance placed again on the host it holds (a resize): judged without its own
    reservation, and keeping its cores when their number does not change."""

    instance_id: str
    host_id: str
    limits: Limits  # what it holds now


def reserve(sess: Session, settings: ServerSettings, request: PlacementRequest,
            instance_id: str, *, leave: str | None = None,
            resident: Resident | None = None) -> Plan:
    """Place `request` and hold the result in this transaction: the host's version CAS (a
    stale view raises RetryableConflict, for `placing`) and the exclusive cores.

    `leave`: the name of a host the instance must not land on (it is leaving it), unless the
    request pins one. `resident`: the instance already holds a host (see `Resident`)."""
    view, versions = cluster_view(sess, settings)
    if resident is not None:
        view = _without(view, resident)
        plan = _place_resident(view, request, resident)
    elif leave is not None and request.host is None:
        plan = _place_elsewhere(view, request, leave)
    else:
        plan = place(request, view)
    ledger.commit_placement(sess, plan.host_id, versions[plan.host_id])
    if resident is not None and plan.cores == _cores(resident.limits):
        return plan  # its own cores: held already
    if resident is not None:
        ledger.release_cores(sess, instance_id)
    ledger.reserve_cores(sess, plan.host_id, plan.cores, instance_id)
    return plan


def _place_elsewhere(view: ClusterView, request: PlacementRequest, leave: str) -> Plan:
    """The best host but `leave`; NoValidHost with every other host's reason otherwise."""
    verdicts = explain(request, view)
    fits = [v for v in verdicts if v.reason is None and v.name != leave]
    if not fits:
        reasons = "; ".join(f"{v.name}: {v.reason or 'is the source'}" for v in verdicts
                            if v.name != leave or v.reason) or "the cluster has no other host"
        raise NoValidHost(f"no other host fits: {reasons}")
    best = max(fits, key=lambda v: v.score or 0.0)
    return place(replace(request, host=best.name), view)


def _cores(limits: Limits) -> list[int]:
    return parse_cpuset(limits.cpuset) if limits.cores and limits.cpuset else []


def _without(view: ClusterView, resident: Resident) -> ClusterView:
    """The view as if `resident` were not on its host. Its host stays up and not draining
    for it: those keep new instances off a host, not an instance on its own host."""
    held = resident.limits.reservation()
    own = set(_cores(resident.limits))
    for position, host in enumerate(view.hosts):
        if host.id == resident.host_id:
            freed = replace(host, up=True, draining=False,
                            taken_cores=[c for c in host.taken_cores if c not in own],
                            memory_reserved_bytes=host.memory_reserved_bytes - held.memory_bytes,
                            pids_reserved=host.pids_reserved - held.pids,
                            instances=host.instances - 1)
            hosts = list(view.hosts)
            hosts[position] = freed
            return replace(view, hosts=hosts).with_index(
                view.index().with_hosts({position: freed}))
    raise NoValidHost(f"host {resident.host_id} of the instance is not in the cluster")


def _place_resident(view: ClusterView, request: PlacementRequest, resident: Resident) -> Plan:
    """`request` on the resident's own host; NoCapacity naming what does not fit."""
    host = next(h for h in view.hosts if h.id == resident.host_id)
    request = replace(request, host=host.name)
    try:
        plan = place(request, view)
    except NoValidHost:
        reason = next(v.reason for v in explain(request, view) if v.name == host.name)
        raise _refusal(view, host, request, reason) from None
    if request.cores == resident.limits.cores and _cores(resident.limits):
        plan = replace(plan, cores=_cores(resident.limits))  # no re-pinning for no change
    return plan


def _refusal(view: ClusterView, host: HostView, request: PlacementRequest,
             reason: str | None) -> NoCapacity:
    if reason == REASON_MEMORY:
        free = host.memory_bytes * view.memory_overcommit - host.memory_reserved_bytes
        return NoCapacity(f"memory {format_size(request.memory_bytes)} does not fit on host "
                          f"{host.name}: {format_size(max(int(free), 0))} free")
    if reason == REASON_PIDS and host.pids_limit_total is not None:
        free = host.pids_limit_total * view.pids_overcommit - host.pids_reserved
        return NoCapacity(f"pids {request.pids} do not fit on host {host.name}: "
                          f"{max(int(free), 0)} free")
    if reason == REASON_CORES:
        try:
            allocate_exclusive(host.cores, host.taken_cores, host.reserved_cores, request.cores)
        except NoCapacity as exc:
            return exc
    return NoCapacity(f"the new limits do not fit on host {host.name}: {reason}")
