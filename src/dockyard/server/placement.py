"""Build the scheduler's snapshot from the store (cached per capacity stamp), for a plan the
caller commits under a version check."""

from __future__ import annotations

import ipaddress
import threading
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.scheduler import ClusterSnapshot, HostSnapshot
from dockyard.store import ledger
from dockyard.store.records import as_utc
from dockyard.store.tables import CoreAllocationRow, HostRow, InstanceRow, NetworkRow


def host_is_up(row: HostRow, timeout: float) -> bool:
    if row.last_heartbeat is None:
        return False
    return as_utc(row.last_heartbeat) > datetime.now(UTC) - timedelta(seconds=timeout)


def _instance_totals(sess: Session,
                     hosts: set[str] | None = None) -> dict[str, tuple[int, int, int, set[str]]]:
    """host id -> (memory reserved, pids reserved, instances, anti-affinity groups), for
    every host or only `hosts`."""
    totals: dict[str, tuple[int, int, int, set[str]]] = {}
    query = (select(InstanceRow.host_id, InstanceRow.limits, InstanceRow.options)
             .where(InstanceRow.host_id.is_not(None)))
    if hosts is not None:
        query = query.where(InstanceRow.host_id.in_(hosts))
    for host_id, limits, options in sess.execute(query):
        memory, pids, count, groups = totals.get(host_id, (0, 0, 0, set()))
        group = (options or {}).get("anti_affinity")
        if group:
            groups.add(str(group))
        totals[host_id] = (memory + int(limits.get("memory_bytes") or 0),
                           pids + int(limits.get("pids") or 0), count + 1, groups)
    return totals


def _taken_cores(sess: Session, hosts: set[str] | None = None) -> dict[str, list[int]]:
    taken: dict[str, list[int]] = {}
    query = select(CoreAllocationRow.host_id, CoreAllocationRow.core)
    if hosts is not None:
        query = query.where(CoreAllocationRow.host_id.in_(hosts))
    for host_id, core in sess.execute(query):
        taken.setdefault(host_id, []).append(int(core))
    return taken


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def effective_labels(row: HostRow) -> dict[str, str]:
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
        down = frozenset(sess.scalars(select(HostRow.id).where(
            or_(HostRow.last_heartbeat.is_(None), HostRow.last_heartbeat <= cutoff))))
        oldest = sess.scalar(select(func.min(HostRow.last_heartbeat))
                             .where(HostRow.last_heartbeat > cutoff))
        until = now + timedelta(seconds=DOWN_RECHECK)
        if oldest is not None:
            until = min(until, as_utc(oldest) + timedelta(seconds=timeout))
        return cls(down=down, until=until, timeout=timeout)

    def current(self, sess: Session, timeout: float) -> _Liveness:
        return self if datetime.now(UTC) < self.until else _Liveness.read(sess, timeout)


@dataclass(frozen=True)
class _Store:
    """What one read of the store gives for a set of hosts (all of them, or the touched)."""

    rows: list[HostRow]
    totals: dict[str, tuple[int, int, int, set[str]]]
    taken: dict[str, list[int]]
    networks: set[str]

    @classmethod
    def read(cls, sess: Session, networks: set[str], hosts: set[str] | None = None) -> _Store:
        query = select(HostRow).order_by(HostRow.name)
        if hosts is not None:
            query = query.where(HostRow.id.in_(hosts))
        return cls(rows=list(sess.scalars(query)), totals=_instance_totals(sess, hosts),
                   taken=_taken_cores(sess, hosts), networks=networks)

    def host(self, row: HostRow, down: frozenset[str]) -> HostSnapshot:
        inv = row.inventory
        memory, pids, count, groups = self.totals.get(row.id, (0, 0, 0, set()))
        return HostSnapshot(
            id=row.id, name=row.name, up=row.id not in down,
            draining=row.draining, cores=list(inv.get("cores", [])),
            reserved_cores=list(row.reserved_cores),
            taken_cores=sorted(self.taken.get(row.id, [])),
            memory_bytes=int(inv.get("memory_bytes", 0)), memory_reserved_bytes=memory,
            networks=self.networks, labels=effective_labels(row),
            pids_limit_total=_optional_int(inv.get("pid_max")), pids_reserved=pids,
            disk_bytes=_optional_int(inv.get("disk_bytes")), groups=frozenset(groups),
            instances=count)


@dataclass(frozen=True)
class _Cached:
    """A snapshot at one capacity stamp, with the host versions and down set it was read at."""

    key: tuple[float, float, float, int]  # overcommit ratios, ledger.cache_epoch
    stamp: int
    snap: ClusterSnapshot
    versions: dict[str, int]
    positions: dict[str, int]  # host id -> position in snap.hosts
    liveness: _Liveness


_cache: weakref.WeakKeyDictionary[Engine, _Cached] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
stats = {"hits": 0, "refreshed": 0, "rebuilt": 0}  # for tests and the benchmark


def _rebuild(sess: Session, key: tuple[float, float, float, int], stamp: int,
             liveness: _Liveness, settings: ServerSettings) -> _Cached:
    store = _Store.read(sess, set(sess.scalars(select(NetworkRow.id))))
    hosts = [store.host(row, liveness.down) for row in store.rows]
    snap = ClusterSnapshot(hosts=hosts, memory_overcommit=settings.memory_overcommit,
                           disk_overcommit=settings.disk_overcommit,
                           pids_overcommit=settings.pids_overcommit)
    snap.index()
    return _Cached(key=key, stamp=stamp, snap=snap,
                   versions={row.id: row.version for row in store.rows},
                   positions={h.id: i for i, h in enumerate(hosts)}, liveness=liveness)


def _refresh(sess: Session, cached: _Cached, stamp: int, touched: set[str],
             liveness: _Liveness) -> _Cached:
    """`cached` brought to `stamp` by re-reading only the `touched` hosts, and to the current
    heartbeats by flipping `up` on the hosts whose state changed."""
    old, down = cached.snap.hosts, liveness.down
    networks = old[0].networks if old else set()
    store = _Store.read(sess, networks, touched) if touched else None
    changed: dict[int, HostSnapshot] = {}
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
        versions = dict(versions)
        for row in store.rows:
            changed[cached.positions[row.id]] = store.host(row, down)
            versions[row.id] = row.version
    for host_id in cached.liveness.down ^ down:
        position = cached.positions.get(host_id)
        if position is not None and position not in changed:
            changed[position] = replace(old[position], up=host_id not in down)
    if not changed:
        return replace(cached, stamp=stamp, liveness=liveness)
    hosts = list(old)
    for position, host in changed.items():
        hosts[position] = host
    snap = replace(cached.snap, hosts=hosts).with_index(cached.snap.index().with_hosts(changed))
    return replace(cached, stamp=stamp, snap=snap, versions=versions, liveness=liveness)


def snapshot(sess: Session, settings: ServerSettings) -> tuple[ClusterSnapshot, dict[str, int]]:
    """The cluster as the scheduler sees it, plus each host's version for the commit.

    Disk and pids budgets come from the inventory when the agent reports them (`disk_bytes`,
    `pid_max`); a host without them has no such budget.

    Cached per database: the store's capacity stamp (`ledger.capacity_stamp`, bumped by every
    transaction that changes a host, an instance's placement or limits, a core or a network)
    says whether the last snapshot is current; when this process wrote the stamps since, only
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
    return fresh.snap, dict(fresh.versions)


def prefixlen(subnet: str) -> int:
    return ipaddress.IPv4Network(subnet).prefixlen
