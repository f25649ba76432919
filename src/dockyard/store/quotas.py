"""Project quotas: usage is counted from the rows a project holds, and checked in the very
transaction that adds to it (the placement's, the resize's, the volume's, the snapshot's).

Invariant: a project never holds more than its limits allow at commit time. `enforce` first
locks the project's row (`SELECT … FOR UPDATE`; on SQLite every transaction is already
BEGIN IMMEDIATE), so two concurrent creates of one project cannot both see room for one
more, on PostgreSQL across servers too. Lowering a limit below the usage is allowed: only
claims that add to an exceeded resource are refused. `exceeded` is the pure rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.errors import QuotaExceeded
from dockyard.model.instance import reservations
from dockyard.model.tenancy import QUOTA_FIELDS, QuotaValues
from dockyard.model.units import format_size
from dockyard.store.tables import Base, InstanceRow, ProjectQuotaRow, ProjectRow, VolumeRow


@dataclass(frozen=True)
class Claim:
    """What an action adds to a project. `memory_bytes=None`: an instance without a memory
    limit, which a project with a memory quota may not have."""

    instances: int = 0
    cores: int = 0
    memory_bytes: int | None = 0
    volumes: int = 0
    snapshots: int = 0


def _show(field: str, value: int) -> str:
    return format_size(value) if field == "memory_bytes" else str(value)


def exceeded(limits: QuotaValues, usage: QuotaValues, claim: Claim) -> list[str]:
    """Why `claim` does not fit (empty when it does), one text per resource with numbers."""
    reasons = []
    for field in QUOTA_FIELDS:
        limit = getattr(limits, field)
        wanted = getattr(claim, field)
        if limit is None or wanted == 0:
            continue
        used = int(getattr(usage, field) or 0)
        if wanted is None:
            reasons.append(f"memory quota {_show(field, limit)} needs a memory limit on every "
                           "instance")
        elif used + wanted > limit:
            reasons.append(f"{field} {_show(field, used)} used + {_show(field, wanted)} "
                           f"requested > quota {_show(field, limit)}")
    return reasons


def limits(sess: Session, project_id: str) -> QuotaValues:
    row = sess.get(ProjectQuotaRow, project_id)
    if row is None:
        return QuotaValues()
    return QuotaValues(**{f: getattr(row, f) for f in QUOTA_FIELDS})


def _snapshot_count(sess: Session, project_id: str) -> int:
    """Snapshots held, once the snapshots table exists (0 before)."""
    table = Base.metadata.tables.get("snapshots")
    if table is None or "project_id" not in table.c:
        return 0
    return int(sess.scalar(select(func.count()).select_from(table)
                           .where(table.c.project_id == project_id)) or 0)


def usage(sess: Session, project_id: str) -> QuotaValues:
    """What the project holds now: every instance row counts (deleting ones still hold their
    cores and memory until they are gone)."""
    instances = cores = memory = 0
    for lim in sess.scalars(select(InstanceRow.limits)
                            .where(InstanceRow.project_id == project_id)):
        held = reservations(lim)
        instances += 1
        cores += held.cores
        memory += held.memory_bytes
    volumes = sess.scalar(select(func.count()).select_from(VolumeRow)
                          .where(VolumeRow.project_id == project_id)) or 0
    return QuotaValues(instances=instances, cores=cores, memory_bytes=memory,
                       volumes=int(volumes), snapshots=_snapshot_count(sess, project_id))


def enforce(sess: Session, project_id: str, claim: Claim) -> None:
    """Lock the project, count, and raise QuotaExceeded (409) if `claim` does not fit."""
    name = sess.scalar(select(ProjectRow.name).where(ProjectRow.id == project_id)
                       .with_for_update())
    quota = limits(sess, project_id)
    if all(getattr(quota, f) is None for f in QUOTA_FIELDS):
        return
    reasons = exceeded(quota, usage(sess, project_id), claim)
    if reasons:
        raise QuotaExceeded(f"quota of project {name} exceeded: {'; '.join(reasons)}")


def update(sess: Session, project_id: str, changes: dict[str, int | None]) -> None:
    row = sess.get(ProjectQuotaRow, project_id)
    if row is None:
        row = ProjectQuotaRow(project_id=project_id)
        sess.add(row)
    for field, value in changes.items():
        setattr(row, field, value)
    sess.flush()
