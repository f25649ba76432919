"""Images in the cluster's registry, and image references.

A reference is `[REGISTRY/]NAME[:TAG]`; the registry part is the first path component when it
looks like a host (has a `.` or a `:`, or is `localhost`), as docker reads it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from dockyard.model.validators import IMAGE_REF_SCHEMA, ImageRef

DEFAULT_TAG = "latest"
# first components of registry repositories no project may own (server/image_access.py):
# the shared base images, and what snapshots and migrations write
RESERVED_NAMESPACES = frozenset({"dockyard", "snapshot", "migrate"})


def split_ref(ref: str) -> tuple[str, str, str]:
    """`(registry, name, tag)` of a reference; registry is "" when it names none."""
    first, _, rest = ref.partition("/")
    registry = ""
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, ref = first, rest
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        name, tag = ref, DEFAULT_TAG
    return registry, name, tag


def names_registry(ref: str) -> bool:
    """Whether a reference says which registry holds it (so it can be pulled)."""
    return bool(split_ref(ref)[0]) and "@" not in ref


class RegistryImage(BaseModel):
    name: str
    tag: str
    ref: str = Field(description="REGISTRY/NAME:TAG, what instances are created from")
    size: int = Field(description="bytes: the config and the compressed layers")
    hosts: list[str] = Field(default_factory=list,
                             description="hosts whose engine has the image locally")


class ImagePush(BaseModel):
    source: ImageRef = Field(description="a local image of the host's engine, NAME[:TAG]",
                             json_schema_extra=IMAGE_REF_SCHEMA)
    host: str | None = Field(default=None, description="the host whose engine has it (default: the "
                             "only host, or `local`)")


class PushProgress(BaseModel):
    """One line of a push's progress stream (JSON lines)."""

    status: str = ""
    id: str | None = None
    current: int | None = None
    total: int | None = None
    ref: str | None = Field(default=None, description="set on the last line of a successful push")
    error: str | None = None
