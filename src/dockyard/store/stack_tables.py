"""The tables of app stacks (issue #12), registered on `tables.Base` by `tables.py`.

    stacks ─┬─ stack_versions   every deployed spec, kept (version 1, 2, …), with a note
            ├─ stack_services   per service: desired replicas, template generation + hash
            └─ stack_replicas   STACK-SERVICE-N → the instance made for it

A service's *generation* counts changes of its template (the spec without `replicas`): a
replica made at an older generation is replaced, a scale changes only `replicas`. A replica
row is written before its instance is created (`instance_id` NULL), so a crash between the
two leaves a row the next convergence adopts or drops, never an unknown instance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.store.tables import Base, ProjectNamed, utcnow


class StackRow(ProjectNamed, Base):
    __tablename__ = "stacks"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_stack_name"),)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # converged | updating | rolling_back | paused (a rollout stopped for an operator)
    status: Mapped[str] = mapped_column(String(16), default="converged",
                                        server_default="converged")
    status_reason: Mapped[str | None] = mapped_column(String(1024))
    # the server converging it now, until when (several servers on one PostgreSQL)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class StackVersionRow(Base):
    __tablename__ = "stack_versions"
    stack_id: Mapped[str] = mapped_column(ForeignKey("stacks.id", ondelete="CASCADE"),
                                          primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(String(255), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StackServiceRow(Base):
    __tablename__ = "stack_services"
    stack_id: Mapped[str] = mapped_column(ForeignKey("stacks.id", ondelete="CASCADE"),
                                          primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    replicas: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    template_hash: Mapped[str] = mapped_column(String(64))
    # when the rollout's last batch of this service began (its `delay` counts from here);
    # NULL: no batch yet in this version (a new version writes the rows afresh)
    last_batch_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StackReplicaRow(Base):
    __tablename__ = "stack_replicas"
    __table_args__ = (UniqueConstraint("stack_id", "service", "slot",
                                       name="uq_stack_replica"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stack_id: Mapped[str] = mapped_column(ForeignKey("stacks.id", ondelete="CASCADE"),
                                          index=True)
    service: Mapped[str] = mapped_column(String(63))
    slot: Mapped[int] = mapped_column(Integer)  # N in STACK-SERVICE-N
    generation: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[str | None] = mapped_column(String(32), index=True)
    template_hash: Mapped[str | None] = mapped_column(String(64))  # of the spec it runs
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # 1st seen up
    restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # set when the reconciler takes it out of the entrance before stopping it: no traffic
    draining_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EntranceAckRow(Base):
    """What the entrance of one host runs: the digest of the routes its HAProxy last applied,
    as its agent reported it when it asked for the next change (`GET /v1/agent/entrance`)."""

    __tablename__ = "entrance_acks"
    host_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), default="")
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
