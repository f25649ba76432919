"""Lookups by user-facing reference and row → API model conversions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from dockyard.errors import NotFound
from dockyard.model.common import Event, Operation, OperationStatus, Project
from dockyard.model.health import HealthState
from dockyard.model.host import Host, HostState
from dockyard.model.instance import (
    DesiredState,
    Instance,
    InstanceState,
    InstanceType,
    Limits,
    VolumeSpec,
)
from dockyard.model.network import Network, NetworkMode
from dockyard.model.tenancy import Quota, TokenInfo
from dockyard.model.volume import Volume, docker_volume_name
from dockyard.scheduler.cpusets import format_cpuset, shared_pool
from dockyard.store import ledger, networks, quotas
from dockyard.store.tables import (
    EventRow,
    HostRow,
    InstanceRow,
    NetworkRow,
    OperationRow,
    ProjectRow,
    TokenRow,
    VolumeRow,
)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def project_by_name(sess: Session, name: str) -> ProjectRow:
    row = sess.scalar(select(ProjectRow).where(ProjectRow.name == name))
    if row is None:
        raise NotFound(f"project {name!r} not found")
    return row


_Named = TypeVar("_Named", InstanceRow, NetworkRow, VolumeRow, HostRow)


def _by_ref(sess: Session, table: type[_Named], what: str, ref: str,
            *where: ColumnElement[bool]) -> _Named:
    """The row of `table` named `ref` or with id `ref` (among those matching `where`), else
    404 "<what> <ref> not found"."""
    row = sess.scalar(select(table).where(*where, or_(table.name == ref, table.id == ref)))
    if row is None:
        raise NotFound(f"{what} {ref!r} not found")
    return row


def instance_by_ref(sess: Session, project_id: str, ref: str) -> InstanceRow:
    return _by_ref(sess, InstanceRow, "instance", ref, InstanceRow.project_id == project_id)


def network_by_ref(sess: Session, ref: str) -> NetworkRow:
    return _by_ref(sess, NetworkRow, "network", ref)


def visible_network(sess: Session, project_id: str, ref: str,
                    admin: bool = False) -> NetworkRow:
    """A network the project may use: its own or a shared one; any network for an admin
    (operators manage the fabric). Others answer 404 as if they did not exist."""
    row = network_by_ref(sess, ref)
    if not (admin or row.shared or row.project_id == project_id):
        raise NotFound(f"network {ref!r} not found")
    return row


def volume_by_ref(sess: Session, project_id: str, ref: str) -> VolumeRow:
    return _by_ref(sess, VolumeRow, "volume", ref, VolumeRow.project_id == project_id)


def host_by_ref(sess: Session, ref: str) -> HostRow:
    return _by_ref(sess, HostRow, "host", ref)


def _names(sess: Session, row: InstanceRow) -> tuple[str, str | None, str]:
    project = sess.get(ProjectRow, row.project_id)
    host = sess.get(HostRow, row.host_id) if row.host_id else None
    network = sess.get(NetworkRow, row.network_id)
    return (project.name if project else row.project_id, host.name if host else None,
            network.name if network else row.network_id)


def instance_model(sess: Session, row: InstanceRow,
                   pools: dict[str, str] | None = None) -> Instance:
    """`pools`: shared cpusets by host id already resolved in this transaction (filled as
    they are; a list of many instances resolves each host's pool once)."""
    project, host, network = _names(sess, row)
    return Instance(
        id=row.id, name=row.name, project=project, state=InstanceState(row.state),
        desired_state=DesiredState(row.desired_state), host=host, ip=row.ip, mac=row.mac,
        hostname=row.hostname, image=row.image, network=network, type=InstanceType(row.type),
        container_id=row.container_id, generation=row.generation,
        limits=effective_limits(sess, row, pools),
        volumes=[VolumeSpec.model_validate(v) for v in row.volumes], env=dict(row.env),
        lxcfs=bool((row.options or {}).get("lxcfs", True)),
        cap_add=list((row.options or {}).get("cap_add", [])), health=HealthState(row.health),
        message=row.message, created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at))


def shared_cpuset(sess: Session, host: HostRow) -> str:
    cores = list(host.inventory.get("cores", []))
    taken = set(ledger.taken_cores(sess, host.id))
    return format_cpuset(shared_pool(cores, taken, set(host.reserved_cores)))


def effective_limits(sess: Session, row: InstanceRow,
                     pools: dict[str, str] | None = None) -> Limits:
    """Stored limits with the cpuset resolved: an exclusive instance's own cores, or the
    host's current shared pool (which changes as exclusive allocations come and go)."""
    limits = Limits.model_validate(row.limits)
    if limits.cores == 0 and row.host_id:
        if pools is not None and row.host_id in pools:
            limits.cpuset = pools[row.host_id]
            return limits
        host = sess.get(HostRow, row.host_id)
        if host is not None:
            limits.cpuset = shared_cpuset(sess, host)
            if pools is not None:
                pools[row.host_id] = limits.cpuset
    return limits


def network_model(sess: Session, row: NetworkRow) -> Network:
    project = sess.get(ProjectRow, row.project_id)
    count = networks.instance_count(sess, row.id)
    return Network(id=row.id, name=row.name, project=project.name if project else "",
                   subnet=row.subnet, gateway=row.gateway, dns=list(row.dns),
                   mode=NetworkMode(row.mode), vlan=row.vlan, shared=row.shared, nat=row.nat,
                   bridge=row.bridge,
                   instances=int(count),
                   created_at=as_utc(row.created_at))


def host_model(sess: Session, row: HostRow) -> Host:
    taken = ledger.taken_cores(sess, row.id)
    inv = row.inventory
    return Host(
        id=row.id, name=row.name, state=HostState(row.state), cores=list(inv.get("cores", [])),
        reserved_cores=list(row.reserved_cores or []), draining=row.draining,
        exclusive_cores={str(core): inst for core, inst in sorted(taken.items())},
        shared_cpuset=shared_cpuset(sess, row),
        memory_bytes=int(inv.get("memory_bytes", 0)),
        memory_reserved_bytes=ledger.memory_reserved(sess, row.id),
        instances=ledger.instance_count(sess, row.id),
        docker_version=str(inv.get("docker_version", "")), kernel=str(inv.get("kernel", "")),
        last_heartbeat=as_utc(row.last_heartbeat) if row.last_heartbeat else None,
        created_at=as_utc(row.created_at))


def event_model(sess: Session, row: EventRow) -> Event:
    project = sess.get(ProjectRow, row.project_id) if row.project_id else None
    return Event(id=row.id, time=as_utc(row.time), project=project.name if project else None,
                 instance=row.instance_id, instance_name=row.instance_name,
                 host=row.host_name, kind=row.kind, message=row.message)


def operation_model(row: OperationRow) -> Operation:
    return Operation(id=row.id, kind=row.kind, instance=row.instance_id,
                     status=OperationStatus(row.status), error=row.error, steps=list(row.steps),
                     created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))


def project_model(row: ProjectRow) -> Project:
    return Project(id=row.id, name=row.name, created_at=as_utc(row.created_at))


def quota_model(sess: Session, row: ProjectRow) -> Quota:
    return Quota(project=row.name, limits=quotas.limits(sess, row.id),
                 usage=quotas.usage(sess, row.id))


def token_info(names: dict[str, str], row: TokenRow) -> TokenInfo:
    """A user token as listed (never its secret); `names`: project id → name."""
    return TokenInfo(id=row.id, project=names.get(row.project_id or ""), role=row.role,
                     description=row.description, created_at=as_utc(row.created_at))


def volume_users(sess: Session, project_id: str) -> dict[str, list[str]]:
    """Volume name -> names of the project's instances that mount it (sorted)."""
    users: dict[str, list[str]] = {}
    rows = sess.execute(select(InstanceRow.name, InstanceRow.volumes)
                        .where(InstanceRow.project_id == project_id)
                        .order_by(InstanceRow.name))
    for name, volumes in rows:
        for vol in volumes:
            if not VolumeSpec.model_validate(vol).is_host_path:
                users.setdefault(vol["source"], []).append(name)
    return users


def volume_model(sess: Session, row: VolumeRow, users: dict[str, list[str]]) -> Volume:
    project = sess.get(ProjectRow, row.project_id)
    host = sess.get(HostRow, row.host_id) if row.host_id else None
    return Volume(id=row.id, name=row.name, project=project.name if project else row.project_id,
                  host=host.name if host else None, docker_name=docker_volume_name(row.id),
                  attached_to=users.get(row.name, []), created_at=as_utc(row.created_at))


def docker_volumes(sess: Session, row: InstanceRow) -> list[VolumeSpec]:
    """The instance's volumes as its host must mount them: named sources become the Docker
    volume `dyv-<id>`. A name without a volume row (an instance older than volumes as a
    resource) keeps its own name, so its data stays where it was."""
    specs = [VolumeSpec.model_validate(v) for v in row.volumes]
    wanted = [s.source for s in specs if not s.is_host_path]
    if not wanted:
        return specs
    names = {name: vid for name, vid in sess.execute(select(VolumeRow.name, VolumeRow.id).where(
        VolumeRow.project_id == row.project_id, VolumeRow.name.in_(wanted)))}
    for spec in specs:
        if not spec.is_host_path and spec.source in names:
            spec.source = docker_volume_name(names[spec.source])
    return specs
