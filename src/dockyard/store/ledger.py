"""The capacity ledger: addresses per network and exclusive cores per host.

Reservations are rows guarded by UNIQUE constraints, inserted in the same transaction as the
instance they belong to, so two concurrent creates can never hold the same IP or core: the
second one fails on the constraint (translated to Conflict) and its whole transaction rolls
back. Placements also bump `hosts.version` with a compare-and-set, so a plan computed from a
stale snapshot is rejected and retried rather than over-committing memory.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.errors import Conflict
from dockyard.store.tables import CoreAllocationRow, HostRow, InstanceRow, IpAllocationRow


def used_ips(sess: Session, network_id: str) -> set[str]:
    rows = sess.scalars(select(IpAllocationRow.ip).where(IpAllocationRow.network_id == network_id))
    return set(rows)


def taken_cores(sess: Session, host_id: str) -> dict[int, str]:
    rows = sess.execute(select(CoreAllocationRow.core, CoreAllocationRow.instance_id)
                        .where(CoreAllocationRow.host_id == host_id))
    return {core: inst for core, inst in rows}


def memory_reserved(sess: Session, host_id: str) -> int:
    total = 0
    for limits in sess.scalars(select(InstanceRow.limits).where(InstanceRow.host_id == host_id)):
        total += int(limits.get("memory_bytes") or 0)
    return total


def instance_count(sess: Session, host_id: str) -> int:
    return int(sess.scalar(select(func.count()).select_from(InstanceRow)
                           .where(InstanceRow.host_id == host_id)) or 0)


def reserve_ip(sess: Session, network_id: str, ip: str, instance_id: str,
               chosen: bool = True) -> None:
    """`chosen=False`: the address was picked from the free ones, so losing it to a concurrent
    placement (possible on PostgreSQL, where placements on different hosts run in parallel)
    is retried with another address, not refused."""
    try:
        with sess.begin_nested():
            sess.add(IpAllocationRow(network_id=network_id, ip=ip, instance_id=instance_id))
    except IntegrityError as exc:
        if not chosen:
            raise Conflict(f"address {ip} was taken concurrently; retry") from exc
        raise Conflict(f"address {ip} is already in use") from exc


def reserve_cores(sess: Session, host_id: str, cores: list[int], instance_id: str) -> None:
    try:
        with sess.begin_nested():
            for core in cores:
                sess.add(CoreAllocationRow(host_id=host_id, core=core, instance_id=instance_id))
    except IntegrityError as exc:
        raise Conflict(f"cores {cores} were taken concurrently; retry") from exc


def commit_placement(sess: Session, host_id: str, seen_version: int) -> None:
    """Compare-and-set on the host's version: fails if another placement landed meanwhile."""
    result = sess.execute(update(HostRow)
                          .where(HostRow.id == host_id, HostRow.version == seen_version)
                          .values(version=seen_version + 1))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("host capacity changed during placement; retry")


def release_cores(sess: Session, instance_id: str) -> None:
    sess.execute(delete(CoreAllocationRow).where(CoreAllocationRow.instance_id == instance_id))


def release_instance(sess: Session, instance_id: str) -> None:
    """Give back everything the instance held (idempotent)."""
    sess.execute(delete(IpAllocationRow).where(IpAllocationRow.instance_id == instance_id))
    release_cores(sess, instance_id)
