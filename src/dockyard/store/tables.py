"""Tables. The ledger's invariants live in UNIQUE constraints, not in code:
an address is held by at most one instance per network ((network_id, ip)), a core by at most
one instance per host ((host_id, core)), and a name is unique in its project (instances,
volumes).
`hosts.version` is bumped by every placement on the host (optimistic concurrency).
`instances.revision` is the global revision at which the instance's desired state last
changed; agents watch for revisions greater than the one they have seen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ProjectNamed:
    """The first columns of a table of resources named uniquely in their project (instances,
    volumes, snapshots, stacks, repositories): id, name, project_id. Each such table declares
    its own UNIQUE(project_id, name) constraint, `uq_<resource>_name`."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, sort_order=-1)
    name: Mapped[str] = mapped_column(String(63), sort_order=-1)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), sort_order=-1)


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProjectQuotaRow(Base):
    """A project's limits; NULL = unlimited, no row = no limits (see store/quotas.py)."""

    __tablename__ = "project_quotas"
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cores: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    volumes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    snapshots: Mapped[int | None] = mapped_column(Integer, nullable=True)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | member | host
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    host_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HostRow(Base):
    __tablename__ = "hosts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="up")
    draining: Mapped[bool] = mapped_column(default=False)
    api_url: Mapped[str] = mapped_column(String(255), default="")
    api_secret: Mapped[str] = mapped_column(String(128), default="")
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reserved_cores: Mapped[list[Any]] = mapped_column(JSON, default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    last_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NetworkRow(Base):
    __tablename__ = "networks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    subnet: Mapped[str] = mapped_column(String(43))
    gateway: Mapped[str] = mapped_column(String(39))
    dns: Mapped[list[Any]] = mapped_column(JSON, default=list)
    mode: Mapped[str] = mapped_column(String(16), default="bridge")
    vlan: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    shared: Mapped[bool] = mapped_column(default=False, server_default=false())
    nat: Mapped[bool] = mapped_column(default=False, server_default=false())
    bridge: Mapped[str] = mapped_column(String(15), unique=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class InstanceRow(ProjectNamed, Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_instance_name"),)
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"))
    image: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str] = mapped_column(String(63))
    ip: Mapped[str] = mapped_column(String(39))
    mac: Mapped[str] = mapped_column(String(17))
    state: Mapped[str] = mapped_column(String(16))
    desired_state: Mapped[str] = mapped_column(String(16))
    container_id: Mapped[str | None] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    restart_serial: Mapped[int] = mapped_column(Integer, default=0)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    volumes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    type: Mapped[str] = mapped_column(String(16), default="container",
                                      server_default="container")
    revision: Mapped[int] = mapped_column(Integer, default=0, index=True)
    message: Mapped[str | None] = mapped_column(String(1024))
    health: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class VolumeRow(ProjectNamed, Base):
    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_volume_name"),)
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IpAllocationRow(Base):
    __tablename__ = "ip_allocations"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), primary_key=True)
    ip: Mapped[str] = mapped_column(String(39), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), index=True)


class CoreAllocationRow(Base):
    __tablename__ = "core_allocations"
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    core: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), index=True)


class OperationRow(Base):
    __tablename__ = "operations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str | None] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(String(1024))
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class SnapshotRow(ProjectNamed, Base):
    """An image committed from an instance and pushed to the registry; its named volumes are
    archived beside it (HOME/snapshots/<id>/volumes/<name>.tar). `spec` keeps what a launch
    from it needs (hostname, limits, env, network, options)."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_snapshot_name"),)
    instance_id: Mapped[str | None] = mapped_column(String(32), index=True)
    instance_name: Mapped[str] = mapped_column(String(63))
    image: Mapped[str] = mapped_column(String(255))
    volumes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    project_id: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str | None] = mapped_column(String(32), index=True)
    instance_name: Mapped[str | None] = mapped_column(String(63))
    host_name: Mapped[str | None] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(1024))


class SampleRow(Base):
    """A collector sample. `resolution` is the seconds one row stands for: raw rows (the
    collector's interval) are kept for the retention window, older ones are down-sampled to
    coarser rows (see store/stats.py). `instance_id` is NULL for a host's own sample."""

    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    host_id: Mapped[str] = mapped_column(String(32), index=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), index=True)
    resolution: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertRuleRow(Base):
    """`builtin` rules are made at start and take their durations from the settings."""

    __tablename__ = "alert_rules"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[float] = mapped_column(Float)
    for_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    builtin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRow(Base):
    """One episode of a rule on a subject: firing, then resolved. At most one firing row per
    (rule, subject), kept by a partial UNIQUE index."""

    __tablename__ = "alerts"
    __table_args__ = (Index("uq_alert_firing", "rule_id", "subject_kind", "subject_id",
                            unique=True, sqlite_where=text("state = 'firing'"),
                            postgresql_where=text("state = 'firing'")),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(32), index=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(32))
    subject_name: Mapped[str] = mapped_column(String(63))
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookRow(Base):
    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024))
    format: Mapped[str] = mapped_column(String(16), default="generic")
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeliveryRow(Base):
    """One notification of one alert state change to one webhook. The UNIQUE key is the
    de-duplication: a state change is notified once per webhook, however often it is seen."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "webhook_id", "alert_state",
                                       name="uq_delivery"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Integer, index=True)
    webhook_id: Mapped[str] = mapped_column(String(32), index=True)
    alert_state: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


from dockyard.store import build_tables as _build_tables  # noqa: E402,F401  (build tables)
from dockyard.store import stack_tables as _stack_tables  # noqa: E402,F401  (stack tables)
