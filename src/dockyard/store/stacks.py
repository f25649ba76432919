"""Queries of app stacks (tables in `stack_tables.py`). The server's stack service calls
these; it writes instances only through `server/instances.py`.

A replica row is added before its instance exists (`reserve_replica`) and bound to it after
(`bind_replica`); `replicas` reports each with its instance's state, or `None` when the
instance is gone or being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from dockyard.errors import NotFound
from dockyard.model.ids import new_id
from dockyard.model.instance import DesiredState
from dockyard.store import meta, revision
from dockyard.store.stack_tables import (
    StackReplicaRow,
    StackRow,
    StackServiceRow,
    StackVersionRow,
)
from dockyard.store.tables import EventRow, HostRow, InstanceRow, ProjectRow


@dataclass(frozen=True)
class ServiceState:
    name: str
    replicas: int
    generation: int
    template_hash: str


@dataclass(frozen=True)
class StackState:
    id: str
    name: str
    version: int
    spec: dict[str, Any]
    services: dict[str, ServiceState]
    created_at: datetime
    updated_at: datetime
    status: str = "converged"  # converged | converging | updating | rolling_back | paused
    status_reason: str | None = None
    project_id: str = ""


@dataclass(frozen=True)
class VersionState:
    version: int
    spec: dict[str, Any]
    note: str
    created_at: datetime


@dataclass(frozen=True)
class ReplicaState:
    service: str
    slot: int
    generation: int
    instance_id: str | None
    instance_name: str | None  # None: no live instance (never created, gone or deleting)
    state: str | None
    host: str | None
    ip: str | None
    health: str = "none"  # dockerd's health of its container (instances.health)
    template_hash: str | None = None  # of the service spec it was made from
    started_at: datetime | None = None  # when the reconciler first saw it running
    restarts: int = 0
    draining: bool = False  # out of the entrance, about to be stopped
    network_id: str | None = None  # the network its address is on


def find(sess: Session, project_id: str, name: str) -> StackState | None:
    row = sess.scalar(select(StackRow).where(StackRow.project_id == project_id,
                                             StackRow.name == name))
    return None if row is None else _state(sess, row)


def get(sess: Session, project_id: str, name: str) -> StackState:
    state = find(sess, project_id, name)
    if state is None:
        raise NotFound(f"stack {name!r} not found")
    return state


def _state(sess: Session, row: StackRow) -> StackState:
    version = sess.get(StackVersionRow, (row.id, row.version))
    services = {s.name: ServiceState(s.name, s.replicas, s.generation, s.template_hash)
                for s in sess.scalars(select(StackServiceRow)
                                      .where(StackServiceRow.stack_id == row.id))}
    return StackState(row.id, row.name, row.version, version.spec if version else {},
                      services, row.created_at, row.updated_at, row.status, row.status_reason,
                      row.project_id)


def page(sess: Session, project_id: str, after: str, limit: int) -> list[StackState]:
    rows = sess.scalars(select(StackRow).where(StackRow.project_id == project_id,
                                               StackRow.name > after)
                        .order_by(StackRow.name).limit(limit))
    return [_state(sess, row) for row in rows]


def save_version(sess: Session, project_id: str, name: str, spec: dict[str, Any],
                 services: dict[str, ServiceState], status: str = "converging",
                 note: str = "deploy") -> StackState:
    """Create the stack or add a version; the service rows become `services` exactly."""
    row = sess.scalar(select(StackRow).where(StackRow.project_id == project_id,
                                             StackRow.name == name).with_for_update())
    if row is None:
        row = StackRow(id=new_id(), name=name, project_id=project_id, version=1,
                       status=status)
        sess.add(row)
        sess.flush()
    else:
        latest = sess.scalar(select(func.max(StackVersionRow.version))
                             .where(StackVersionRow.stack_id == row.id)) or 0
        row.version = latest + 1
        row.status, row.status_reason = status, None
    sess.add(StackVersionRow(stack_id=row.id, version=row.version, spec=spec, note=note))
    restore_services(sess, row.id, services)
    sess.flush()
    return _state(sess, row)


def restore(sess: Session, before: StackState | None, project_id: str, name: str) -> None:
    """Undo `save_version`: back to `before` (the version pointer and the service rows), or
    no stack at all."""
    row = sess.scalar(select(StackRow).where(StackRow.project_id == project_id,
                                             StackRow.name == name).with_for_update())
    if row is None:
        return
    if before is None:
        drop(sess, row.id)
        return
    sess.execute(delete(StackVersionRow).where(StackVersionRow.stack_id == row.id,
                                               StackVersionRow.version > before.version))
    row.version = before.version
    row.status, row.status_reason = before.status, before.status_reason
    restore_services(sess, row.id, before.services)


def restore_services(sess: Session, stack_id: str, services: dict[str, ServiceState]) -> None:
    sess.execute(delete(StackServiceRow).where(StackServiceRow.stack_id == stack_id))
    sess.flush()
    for svc in services.values():
        sess.add(StackServiceRow(stack_id=stack_id, name=svc.name, replicas=svc.replicas,
                                 generation=svc.generation, template_hash=svc.template_hash))


def drop(sess: Session, stack_id: str) -> None:
    for table in (StackReplicaRow, StackServiceRow, StackVersionRow):
        sess.execute(delete(table).where(table.stack_id == stack_id))
    sess.execute(delete(StackRow).where(StackRow.id == stack_id))


def replicas(sess: Session, stack_id: str, service: str | None = None) -> list[ReplicaState]:
    query = (select(StackReplicaRow, InstanceRow, HostRow.name)
             .outerjoin(InstanceRow, InstanceRow.id == StackReplicaRow.instance_id)
             .outerjoin(HostRow, HostRow.id == InstanceRow.host_id)
             .where(StackReplicaRow.stack_id == stack_id)
             .order_by(StackReplicaRow.service, StackReplicaRow.slot))
    if service is not None:
        query = query.where(StackReplicaRow.service == service)
    out = []
    for rep, inst, host in sess.execute(query):
        live = inst is not None and inst.desired_state != DesiredState.deleted
        out.append(ReplicaState(rep.service, rep.slot, rep.generation, rep.instance_id,
                                inst.name if live else None, inst.state if live else None,
                                host if live else None, inst.ip if live else None,
                                inst.health if live else "none", rep.template_hash,
                                rep.started_at, rep.restarts, rep.draining_since is not None,
                                inst.network_id if live else None))
    return out


def reserve_replica(sess: Session, stack_id: str, service: str, slot: int,
                    generation: int, digest: str | None = None) -> None:
    sess.add(StackReplicaRow(stack_id=stack_id, service=service, slot=slot,
                             generation=generation, instance_id=None, template_hash=digest))


def mark_started(sess: Session, stack_id: str, service: str, slot: int,
                 at: datetime | None, restarted: bool = False) -> None:
    """When the replica was first seen running (None: not since its restart)."""
    row = _replica(sess, stack_id, service, slot)
    if row is not None:
        row.started_at = at
        row.restarts += restarted


def mark_draining(sess: Session, stack_id: str, service: str, slots: list[int],
                  at: datetime | None) -> None:
    """Take these replicas out of the entrance (`at`), or put them back (None)."""
    sess.execute(update(StackReplicaRow).where(StackReplicaRow.stack_id == stack_id,
                                               StackReplicaRow.service == service,
                                               StackReplicaRow.slot.in_(slots))
                 .values(draining_since=at).execution_options(synchronize_session=False))


def mark_batch(sess: Session, stack_id: str, service: str, at: datetime) -> None:
    """A rollout batch of `service` begins now (`delay` counts from it)."""
    sess.execute(update(StackServiceRow).where(StackServiceRow.stack_id == stack_id,
                                               StackServiceRow.name == service)
                 .values(last_batch_at=at))


def last_batch(sess: Session, stack_id: str, service: str) -> datetime | None:
    return sess.scalar(select(StackServiceRow.last_batch_at).where(
        StackServiceRow.stack_id == stack_id, StackServiceRow.name == service))


def by_id(sess: Session, stack_id: str) -> StackState | None:
    row = sess.get(StackRow, stack_id)
    return None if row is None else _state(sess, row)


def all_stacks(sess: Session) -> list[StackState]:
    return [_state(sess, row) for row in sess.scalars(select(StackRow).order_by(StackRow.id))]


def set_status(sess: Session, stack_id: str, status: str, reason: str | None = None) -> None:
    row = sess.get(StackRow, stack_id)
    if row is not None:
        row.status, row.status_reason = status, (reason or None) and reason[:1024]


def versions(sess: Session, stack_id: str) -> list[VersionState]:
    rows = sess.scalars(select(StackVersionRow).where(StackVersionRow.stack_id == stack_id)
                        .order_by(StackVersionRow.version))
    return [VersionState(r.version, r.spec, r.note, r.created_at) for r in rows]


def set_note(sess: Session, stack_id: str, version: int, note: str) -> None:
    row = sess.get(StackVersionRow, (stack_id, version))
    if row is not None:
        row.note = note[:255]


def take_lease(sess: Session, stack_id: str, owner: str, now: datetime,
               until: datetime, stale: str | None = None) -> bool:
    """Whether `owner` holds the stack's convergence lease until `until` now: one atomic
    conditional UPDATE (free, expired, already its own, or still held by `stale`, an owner
    the caller knows to be gone), so two servers on one PostgreSQL never both get it."""
    result = sess.execute(
        update(StackRow).where(StackRow.id == stack_id,
                               or_(StackRow.lease_owner.is_(None),
                                   StackRow.lease_owner == owner,
                                   StackRow.lease_until < now,
                                   StackRow.lease_owner == (stale or owner)))
        .values(lease_owner=owner, lease_until=until)
        .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def lease_owner(sess: Session, stack_id: str) -> str | None:
    return sess.scalar(select(StackRow.lease_owner).where(StackRow.id == stack_id))


def release_lease(sess: Session, stack_id: str, owner: str) -> None:
    sess.execute(update(StackRow).where(StackRow.id == stack_id, StackRow.lease_owner == owner)
                 .values(lease_owner=None, lease_until=None)
                 .execution_options(synchronize_session=False))


def record_event(sess: Session, project_id: str, stack: str, kind: str, message: str) -> None:
    """An event of the stack (rollout progress, rollback, pause), in its project's feed."""
    sess.add(EventRow(project_id=project_id, instance_id=None, instance_name=None,
                      host_name=None, kind=kind, message=f"stack {stack}: {message}"[:1024]))


def healthchecked(sess: Session, project_id: str | None) -> list[tuple[str, str, str, str]]:
    """(instance, host, project, health) of every instance with a healthcheck that is not
    being deleted: the `dockyard_instance_healthy` series."""
    query = (select(InstanceRow.name, HostRow.name, ProjectRow.name, InstanceRow.health,
                    InstanceRow.options)
             .join(ProjectRow, ProjectRow.id == InstanceRow.project_id)
             .outerjoin(HostRow, HostRow.id == InstanceRow.host_id)
             .where(InstanceRow.desired_state != DesiredState.deleted))
    if project_id is not None:
        query = query.where(InstanceRow.project_id == project_id)
    return [(name, host or "", project, health)
            for name, host, project, health, options in sess.execute(query)
            if (options or {}).get("healthcheck")]


def bind_replica(sess: Session, stack_id: str, service: str, slot: int,
                 instance_id: str) -> None:
    """Also a change of the network's peers: agents add the service name to /etc/hosts."""
    row = _replica(sess, stack_id, service, slot)
    if row is not None:
        row.instance_id = instance_id
        meta.put(sess, meta.NETWORKS_REVISION, str(revision.bump(sess)))


def forget_replica(sess: Session, stack_id: str, service: str, slot: int) -> None:
    sess.execute(delete(StackReplicaRow).where(StackReplicaRow.stack_id == stack_id,
                                               StackReplicaRow.service == service,
                                               StackReplicaRow.slot == slot))


def _replica(sess: Session, stack_id: str, service: str, slot: int) -> StackReplicaRow | None:
    return sess.scalar(select(StackReplicaRow).where(StackReplicaRow.stack_id == stack_id,
                                                     StackReplicaRow.service == service,
                                                     StackReplicaRow.slot == slot))


def instance_named(sess: Session, project_id: str, name: str) -> str | None:
    """The id of the live instance `name` of the project (None: none, or being deleted)."""
    return sess.scalar(select(InstanceRow.id).where(
        InstanceRow.project_id == project_id, InstanceRow.name == name,
        InstanceRow.desired_state != DesiredState.deleted))


def instance_exists(sess: Session, instance_id: str) -> bool:
    return sess.get(InstanceRow, instance_id) is not None


def memberships(sess: Session) -> dict[tuple[str, str], tuple[str, str]]:
    """(network id, ip) → (stack id, service) of every bound replica whose instance is not
    being deleted (an address is one instance's per network): for /etc/hosts."""
    rows = sess.execute(select(InstanceRow.network_id, InstanceRow.ip,
                               StackReplicaRow.stack_id, StackReplicaRow.service)
                        .join(InstanceRow, InstanceRow.id == StackReplicaRow.instance_id)
                        .where(InstanceRow.desired_state != DesiredState.deleted))
    return {(net, ip): (stack, service) for net, ip, stack, service in rows}


def name_holder(sess: Session, project_id: str, name: str) -> str | None:
    """The desired state of the instance holding `name` (`deleted`: going away), or None."""
    return sess.scalar(select(InstanceRow.desired_state).where(
        InstanceRow.project_id == project_id, InstanceRow.name == name))


def project_name(sess: Session, project_id: str) -> str:
    row = sess.get(ProjectRow, project_id)
    return row.name if row is not None else project_id
