"""Build the scheduler's snapshot from the store, and commit a plan under a version check."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.scheduler import ClusterSnapshot, HostSnapshot
from dockyard.store import ledger
from dockyard.store.records import as_utc
from dockyard.store.tables import HostRow, NetworkRow


def host_is_up(row: HostRow, timeout: float) -> bool:
    if row.last_heartbeat is None:
        return False
    return as_utc(row.last_heartbeat) > datetime.now(UTC) - timedelta(seconds=timeout)


def snapshot(sess: Session, heartbeat_timeout: float) -> tuple[ClusterSnapshot, dict[str, int]]:
    """The cluster as the scheduler sees it, plus each host's version for the commit."""
    hosts = []
    versions = {}
    networks = set(sess.scalars(select(NetworkRow.id)))  # bridge networks span every host
    for row in sess.scalars(select(HostRow).order_by(HostRow.name)):
        inv = row.inventory
        hosts.append(HostSnapshot(
            id=row.id, name=row.name, up=host_is_up(row, heartbeat_timeout),
            draining=row.draining, cores=list(inv.get("cores", [])),
            reserved_cores=list(row.reserved_cores),
            taken_cores=sorted(ledger.taken_cores(sess, row.id)),
            memory_bytes=int(inv.get("memory_bytes", 0)),
            memory_reserved_bytes=ledger.memory_reserved(sess, row.id),
            networks=networks, labels=dict(row.labels)))
        versions[row.id] = row.version
    return ClusterSnapshot(hosts=hosts), versions


def prefixlen(subnet: str) -> int:
    return ipaddress.IPv4Network(subnet).prefixlen
