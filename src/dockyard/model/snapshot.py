"""Snapshots: an instance committed to the registry, its named volumes archived beside it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from dockyard.model.validators import IMAGE_REF_SCHEMA, NAME_RE, ImageRef


class SnapshotCreate(BaseModel):
    tag: str | None = Field(None, pattern=NAME_RE.pattern, description="the snapshot's "
                            "name (default: INSTANCE-YYYYMMDD-HHMMSS)")
    pause: bool = Field(False, description="freeze the instance during the commit "
                        "(consistent root filesystem; the same PID after)")


class SnapshotVolume(BaseModel):
    name: str
    target: str
    read_only: bool = False
    size: int = 0


class Snapshot(BaseModel):
    id: str
    name: str
    project: str
    instance: str
    image: str
    volumes: list[SnapshotVolume]
    size: int
    created_at: datetime


class MigrateRequest(BaseModel):
    host: str | None = Field(None, description="target host (default: the scheduler picks)")
    live: bool = Field(False, description="move the running processes (CRIU checkpoint and "
                       "restore) after a preflight")
    check: bool = Field(False, description="with live: only run the preflight and answer its "
                        "report")
    fallback: bool = Field(False, description="with live: a failed preflight moves the "
                           "instance cold instead (the answer says why)")


class RebuildRequest(BaseModel):
    image: ImageRef = Field(min_length=1, max_length=255, json_schema_extra=IMAGE_REF_SCHEMA)


class EvacuateRequest(BaseModel):
    force: bool = Field(False, description="also for a host that is up")
