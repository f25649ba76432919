"""Hosts: machines running dockerd and a Dockyard agent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class HostState(StrEnum):
    up = "up"
    down = "down"


class Route(BaseModel):
    dst: str  # CIDR
    dev: str | None = None


class HostInventory(BaseModel):
    """What an agent finds on its machine (overridable by the operator)."""

    cores: list[int] = Field(min_length=1)
    reserved_cores: list[int] = Field(default_factory=list,
                                      description="cores kept for the system: never handed out")
    memory_bytes: int = Field(gt=0)
    routes: list[Route] = Field(default_factory=list)
    docker_version: str = ""
    cgroup_version: int = 1
    kernel: str = ""
    vm_accel: str = Field("", description="how this host runs VM instances: kvm, tcg "
                          "(emulated, chosen by the operator), or \"\" (no VMs: no usable "
                          "/dev/kvm)")
    vm_images: dict[str, int] = Field(default_factory=dict, description="the VM images on "
                                      "this host: name -> the guest's minimum memory (bytes)")


class Host(BaseModel):
    id: str
    name: str
    state: HostState
    cores: list[int]
    reserved_cores: list[int] = Field(default_factory=list)
    exclusive_cores: dict[str, str] = Field(
        default_factory=dict, description="core -> instance id holding it")
    shared_cpuset: str
    memory_bytes: int
    memory_reserved_bytes: int
    instances: int
    docker_version: str
    kernel: str
    last_heartbeat: datetime | None
    created_at: datetime
    draining: bool = Field(False, description="no new placements while set")
    labels: dict[str, str] = Field(default_factory=dict)
    feed_requests: dict[str, int] = Field(
        default_factory=dict, description="agent-feed requests of this host since the server "
        "started, per endpoint (watch, heartbeat, report, ...); in memory, per server")


class HostCreate(BaseModel):
    """`POST /v1/hosts`: a host row (state `down`) and a token for its agent."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    labels: dict[str, str] = Field(default_factory=dict, description="win over the labels "
                                   "the agent registers with")


class HostAdded(Host):
    token: str = Field(description="the agent's host token; shown once, stored hashed")


class ClusterCa(BaseModel):
    """The cluster CA's certificate (public): what a CLI or an agent trusts for Dockyard."""
    pem: str = Field(description="the CA certificate, PEM")
    fingerprint: str = Field(description="SHA-256 of the certificate (DER), AB:CD:… — check "
                             "it against `dockyard up`'s output before trusting the PEM")
