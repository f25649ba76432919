"""Volumes: named data volumes of a project, bound to the host where they were first used.

A volume lives on one host (the data does not move by itself); on that host its Docker volume
is `dyv-<id>`, so two projects' volumes of the same name never share data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from dockyard.model.instance import Strict
from dockyard.model.validators import VOLUME_NAME_RE, VOLUME_NAME_SCHEMA, matching

DOCKER_PREFIX = "dyv-"


def docker_volume_name(volume_id: str) -> str:
    return f"{DOCKER_PREFIX}{volume_id}"


class VolumeCreate(Strict):
    name: Annotated[str, Field(json_schema_extra=VOLUME_NAME_SCHEMA), matching(
        VOLUME_NAME_RE, "volume name must be 1-63 characters of lower-case letters, digits, "
        "'_', '.' and '-', starting with a letter or digit")]


class Volume(BaseModel):
    id: str
    name: str
    project: str
    host: str | None = Field(description="the host holding the data; null until first used")
    docker_name: str
    attached_to: list[str] = Field(description="names of the instances that mount it")
    created_at: datetime
