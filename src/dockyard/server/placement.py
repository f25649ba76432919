"""Build the scheduler's snapshot from the store, and commit a plan under a version check."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.scheduler import ClusterSnapshot, HostSnapshot
from dockyard.store.records import as_utc
from dockyard.store.tables import CoreAllocationRow, HostRow, InstanceRow, NetworkRow


def host_is_up(row: HostRow, timeout: float) -> bool:
    if row.last_heartbeat is None:
        return False
    return as_utc(row.last_heartbeat) > datetime.now(UTC) - timedelta(seconds=timeout)


def _instance_totals(sess: Session) -> dict[str, tuple[int, int, int, set[str]]]:
    """host id -> (memory reserved, pids reserved, instances, anti-affinity groups)."""
    totals: dict[str, tuple[int, int, int, set[str]]] = {}
    rows = sess.execute(select(InstanceRow.host_id, InstanceRow.limits, InstanceRow.options)
                        .where(InstanceRow.host_id.is_not(None)))
    for host_id, limits, options in rows:
        memory, pids, count, groups = totals.get(host_id, (0, 0, 0, set()))
        group = (options or {}).get("anti_affinity")
        if group:
            groups.add(str(group))
        totals[host_id] = (memory + int(limits.get("memory_bytes") or 0),
                           pids + int(limits.get("pids") or 0), count + 1, groups)
    return totals


def _taken_cores(sess: Session) -> dict[str, list[int]]:
    taken: dict[str, list[int]] = {}
    for host_id, core in sess.execute(select(CoreAllocationRow.host_id, CoreAllocationRow.core)):
        taken.setdefault(host_id, []).append(int(core))
    return taken


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def effective_labels(row: HostRow) -> dict[str, str]:
    """The agent's labels (`inventory.labels`, from its registration) overridden by those
    given at `host add` (`hosts.labels`)."""
    agent = row.inventory.get("labels") or {}
    return {str(k): str(v) for k, v in {**agent, **(row.labels or {})}.items()}


def snapshot(sess: Session, settings: ServerSettings) -> tuple[ClusterSnapshot, dict[str, int]]:
    """The cluster as the scheduler sees it, plus each host's version for the commit.

    Disk and pids budgets come from the inventory when the agent reports them (`disk_bytes`,
    `pid_max`); a host without them has no such budget.
    """
    hosts = []
    versions = {}
    networks = set(sess.scalars(select(NetworkRow.id)))  # bridge networks span every host
    totals, taken = _instance_totals(sess), _taken_cores(sess)
    for row in sess.scalars(select(HostRow).order_by(HostRow.name)):
        inv = row.inventory
        memory, pids, count, groups = totals.get(row.id, (0, 0, 0, set()))
        hosts.append(HostSnapshot(
            id=row.id, name=row.name, up=host_is_up(row, settings.heartbeat_timeout),
            draining=row.draining, cores=list(inv.get("cores", [])),
            reserved_cores=list(row.reserved_cores),
            taken_cores=sorted(taken.get(row.id, [])),
            memory_bytes=int(inv.get("memory_bytes", 0)), memory_reserved_bytes=memory,
            networks=networks, labels=effective_labels(row),
            pids_limit_total=_optional_int(inv.get("pid_max")), pids_reserved=pids,
            disk_bytes=_optional_int(inv.get("disk_bytes")), groups=frozenset(groups),
            instances=count))
        versions[row.id] = row.version
    return ClusterSnapshot(hosts=hosts, memory_overcommit=settings.memory_overcommit,
                           disk_overcommit=settings.disk_overcommit,
                           pids_overcommit=settings.pids_overcommit), versions


def prefixlen(subnet: str) -> int:
    return ipaddress.IPv4Network(subnet).prefixlen
