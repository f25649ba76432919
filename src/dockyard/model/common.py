"""Projects, events and operations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Project(BaseModel):
    id: str
    name: str
    created_at: datetime


class Event(BaseModel):
    id: int
    time: datetime
    project: str | None
    instance: str | None
    instance_name: str | None
    host: str | None
    kind: str
    message: str


class OperationStatus(StrEnum):
    running = "running"
    success = "success"
    failure = "failure"


class Operation(BaseModel):
    id: str
    kind: str
    instance: str | None
    status: OperationStatus
    error: str | None
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
