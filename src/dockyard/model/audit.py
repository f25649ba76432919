"""Audit log entries, as `GET /v1/audit` returns them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    id: int
    time: datetime
    token_id: str | None = Field(description="id of the token used (none: missing/invalid)")
    token: str = Field(description="the token's description")
    role: str = Field(description="admin | member | host | anonymous")
    project: str | None = Field(description="name of the token's project")
    method: str
    path: str
    status: int = Field(description="HTTP status of the reply")
    target: str = Field(description="the object acted on (name or id), when known")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next: str | None
