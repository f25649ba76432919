"""Projects, user tokens and quotas as the API shows them.

A user token belongs to one project with a role: `admin` (cluster-wide power; acts in its
own project unless a call names another with `?project=`) or `member` (its project only).
A quota limit of None means "no limit"; usage counts what the project holds now.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, JsonValue, field_validator

from dockyard.model.image import RESERVED_NAMESPACES
from dockyard.model.instance import Strict
from dockyard.model.units import IO_SCHEMA, parse_size
from dockyard.model.validators import NAME_SCHEMA, check_name


class Role(StrEnum):
    admin = "admin"
    member = "member"


_RESERVED: list[JsonValue] = [*sorted(RESERVED_NAMESPACES)]


class ProjectCreate(Strict):
    name: str = Field(json_schema_extra={**NAME_SCHEMA, "not": {"enum": _RESERVED}})

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value in RESERVED_NAMESPACES:
            raise ValueError(f"{value!r} names the registry's shared or system images")
        return check_name(value)


class TokenCreate(Strict):
    project: str = Field(description="the project the token acts in")
    role: Role = Role.member
    description: str = Field("", max_length=255)


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    id: str
    project: str | None
    role: str
    description: str
    created_at: datetime


class TokenCreated(TokenInfo):
    token: str = Field(description="the bearer token, shown this once")


class Whoami(BaseModel):
    token_id: str
    role: str
    project: str
    description: str


QUOTA_FIELDS = ("instances", "cores", "memory_bytes", "volumes", "snapshots")


class QuotaValues(BaseModel):
    """Limits (None = unlimited) or usage of one project."""

    instances: int | None = None
    cores: int | None = Field(default=None, description="exclusive cores (cpuset)")
    memory_bytes: int | None = None
    volumes: int | None = None
    snapshots: int | None = None


class QuotaUpdate(Strict):
    """PUT body: the fields given change (null removes that limit), the others stay."""

    instances: int | None = Field(None, ge=0, le=1_000_000)
    cores: int | None = Field(None, ge=0, le=1_000_000)
    memory: str | int | None = Field(None, description="e.g. 8G (bytes if a number)",
                                     json_schema_extra=IO_SCHEMA)  # any size from 0
    volumes: int | None = Field(None, ge=0, le=1_000_000)
    snapshots: int | None = Field(None, ge=0, le=1_000_000)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int | None) -> int | None:
        return None if value is None else parse_size(value)

    def changes(self) -> dict[str, int | None]:
        """Quota column -> new limit, for the fields the caller gave."""
        out: dict[str, int | None] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            out["memory_bytes" if name == "memory" else name] = \
                None if value is None else int(value)
        return out


class Quota(BaseModel):
    project: str
    limits: QuotaValues
    usage: QuotaValues
