"""The tables of repositories and builds (issue #13), registered on `tables.Base` by
`tables.py`.

    repos ─┬─ builds ─┬─ build_logs      every line of a build's log, numbered from 1
           │          └─ build_archives  the uploaded tar context of a queued/running build
           └─ hook_deliveries            the delivery keys seen per repository (replays)

A repository's webhook secret and credentials are stored encrypted (Fernet, key in the
server's HOME; see server/secrets.py): the secret must be readable to check signatures, the
credentials to clone. `builds.seq` orders builds by arrival (the queue). A build is claimed
by a conditional UPDATE queued → running, so two servers never run the same one;
`heartbeat_at` tells a build whose server died from one still running. A repository without
`url` builds uploaded archives: each is stored with its build (in the database, so that any
server can hand it to the build host) and deleted when that build ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.store.tables import Base, ProjectNamed, utcnow


class RepoRow(ProjectNamed, Base):
    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_repo_name"),)
    url: Mapped[str | None] = mapped_column(String(1024))  # None: uploaded archives
    branch: Mapped[str] = mapped_column(String(200))
    dockerfile: Mapped[str] = mapped_column(String(255))
    context: Mapped[str] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(String(255))
    deploy: Mapped[list[Any]] = mapped_column(JSON, default=list)
    secret_enc: Mapped[str] = mapped_column(Text)
    credentials_enc: Mapped[str | None] = mapped_column(Text)
    timeout: Mapped[float | None] = mapped_column(Float)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cpus: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BuildRow(Base):
    __tablename__ = "builds"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=False, unique=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"),
                                         index=True)
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    ref: Mapped[str] = mapped_column(String(255))
    branch: Mapped[str | None] = mapped_column(String(200))
    commit: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(String(1024))
    trigger: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    host: Mapped[str | None] = mapped_column(String(63))
    image: Mapped[str | None] = mapped_column(String(512))
    digest: Mapped[str | None] = mapped_column(String(128))
    step: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(String(2048))
    operation_id: Mapped[str | None] = mapped_column(String(32))
    rollout: Mapped[str | None] = mapped_column(String(2048))  # what --deploy did
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BuildLogRow(Base):
    __tablename__ = "build_logs"
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"),
                                          primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class HookDeliveryRow(Base):
    __tablename__ = "hook_deliveries"
    repo_id: Mapped[str] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"),
                                         primary_key=True)
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BuildArchiveRow(Base):
    __tablename__ = "build_archives"
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"),
                                          primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
