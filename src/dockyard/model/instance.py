"""Instance specs (what users ask for) and records (what the API answers)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dockyard.model.health import HealthcheckSpec, HealthState
from dockyard.model.units import (
    IO_SCHEMA,
    MAX_AMOUNT,
    MEMORY_SCHEMA,
    RATE_SCHEMA,
    parse_rate,
    parse_size,
)
from dockyard.model.validators import (
    CAPABILITY_PATTERN,
    CONSTRAINTS_SCHEMA,
    CONTAINER_PATH_SCHEMA,
    ENV_SCHEMA,
    HOSTNAME_SCHEMA,
    IMAGE_REF_RE,
    IPV4_RE,
    NAME_SCHEMA,
    SSH_KEY_PATTERN,
    VOLUME_NAME_RE,
    VOLUME_SOURCE_SCHEMA,
    ImageRef,
    Name,
    check_capability,
    check_container_path,
    check_env_key,
    check_env_value,
    check_host_path,
    check_hostname,
    check_name,
)

DOCKER_MEMORY_FLOOR = 6 * 1024 * 1024  # dockerd refuses less than 6 MiB
DEFAULT_PIDS = 4096  # the seed's lesson: fork bombs must stay inside


class InstanceState(StrEnum):
    creating = "creating"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    starting = "starting"
    deleting = "deleting"
    error = "error"
    unknown = "unknown"  # never stored: shown while the instance's host is down


class InstanceType(StrEnum):
    container = "container"
    vm = "vm"  # a QEMU/KVM virtual machine (agent/vm.py)


VM_DEFAULT_MEMORY = 512 * 1024 * 1024  # a VM launched without --memory gets this much


class DesiredState(StrEnum):
    running = "running"
    stopped = "stopped"
    deleted = "deleted"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _memory_value(value: str | int | None) -> int | None:
    if value is None:
        return None
    size = parse_size(value)
    if size == 0:
        raise ValueError("memory must be more than 0")
    if size < DOCKER_MEMORY_FLOOR:
        raise ValueError("memory must be at least 6M (Docker's minimum)")
    return size


def _disk_value(value: str | int | None) -> int | None:
    if value is None:
        return None
    size = parse_size(value)
    if size < 1024 * 1024:
        raise ValueError("a disk must be at least 1M")
    return size


def _io_value(value: str | int | None) -> int | None:
    """Bytes (or operations) per second; 0 means "no limit"."""
    if value is None:
        return None
    amount = parse_size(value)
    if 0 < amount < 1024 and isinstance(value, str) and not value.strip().isdigit():
        raise ValueError("IO limits below 1K/s are not useful")
    return amount


def _rate_value(value: str | int | None) -> int | None:
    """Bits per second; 0 means "no limit"."""
    if value is None or value == 0 or value == "0":
        return None if value is None else 0
    rate = parse_rate(value)
    if rate < 8000:
        raise ValueError("network rates below 8kbit are not supported")
    return rate


def _human(value: object) -> str | int | None:
    """A size or rate as the API takes it, before its unit is read: a string, an integer (a
    bool or an integral float is taken as one, as pydantic's `str | int` took it), or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):  # bool included: True is 1
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("must be a string with a unit (256M, 50mbit) or an integer")


def _accepts(schema: dict[str, object]) -> WithJsonSchema:
    """The field's JSON Schema states what the API accepts (a string with a unit, or a number
    within bounds), not the int the value becomes once parsed."""
    return WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
                           **schema})


# Parsed once, at the edge: "256M" arrives, the model holds 268435456 from then on.
MemoryBytes = Annotated[int | None, BeforeValidator(lambda v: _memory_value(_human(v))),
                        _accepts(MEMORY_SCHEMA)]
DiskBytes = Annotated[int | None, BeforeValidator(lambda v: _disk_value(_human(v))),
                      _accepts(MEMORY_SCHEMA)]
IoAmount = Annotated[int | None, BeforeValidator(lambda v: _io_value(_human(v))),
                     _accepts(IO_SCHEMA)]
BitRate = Annotated[int | None, BeforeValidator(lambda v: _rate_value(_human(v))),
                    _accepts(RATE_SCHEMA)]


class LimitsSpec(Strict):
    """Limits as users write them (`memory: "256M"`, `ingress: "50mbit"`)."""

    # held parsed: bytes, bytes/s and bits/s as ints (MemoryBytes, IoAmount, BitRate)

    cores: int = Field(0, ge=0, le=1024, description="exclusive cores (cpuset)")
    cpus: float | None = Field(None, gt=0, le=1024, description="CFS quota in CPUs, as docker")
    cpu_weight: int | None = Field(None, ge=2, le=262144, description="cpu shares")
    memory: MemoryBytes = Field(None, description="memory limit, e.g. 256M")
    pids: int = Field(DEFAULT_PIDS, ge=16, le=4194304)
    read_bps: IoAmount = Field(None, description="disk read bytes/s, e.g. 10M")
    write_bps: IoAmount = Field(None, description="disk write bytes/s, e.g. 10M")
    read_iops: int | None = Field(None, ge=0, le=MAX_AMOUNT,
                                  description="disk read operations/s")
    write_iops: int | None = Field(None, ge=0, le=MAX_AMOUNT,
                                   description="disk write operations/s")
    ingress: BitRate = Field(None, description="network rate to the instance, e.g. 50mbit")
    egress: BitRate = Field(None, description="network rate from the instance")

    def to_limits(self, cpuset: str = "") -> Limits:
        """The stored form; 0 ("no limit") of an IO or network limit becomes None."""
        return Limits(cores=self.cores, cpuset=cpuset, cpus=self.cpus,
                      cpu_weight=self.cpu_weight, memory_bytes=self.memory, pids=self.pids,
                      read_bps=self.read_bps or None, write_bps=self.write_bps or None,
                      read_iops=self.read_iops or None, write_iops=self.write_iops or None,
                      ingress_bps=self.ingress or None, egress_bps=self.egress or None)


class LimitsPatch(Strict):
    """A live resize: only the fields given change; 0 removes an IO or network limit."""

    cores: int | None = Field(None, ge=0, le=1024)
    cpus: float | None = Field(None, ge=0, le=1024, description="0 removes the quota")
    cpu_weight: int | None = Field(None, ge=2, le=262144)
    memory: MemoryBytes = None
    pids: int | None = Field(None, ge=16, le=4194304)
    read_bps: IoAmount = None
    write_bps: IoAmount = None
    read_iops: int | None = Field(None, ge=0, le=MAX_AMOUNT)
    write_iops: int | None = Field(None, ge=0, le=MAX_AMOUNT)
    ingress: BitRate = None
    egress: BitRate = None

    def apply(self, current: Limits) -> Limits:
        """The limits after this patch (cpuset is resolved by the caller)."""
        new = current.model_copy()
        for field, target in _PATCHED:
            value = getattr(self, field)
            if value is not None:
                setattr(new, target, value)
        for field, target in _CLEARED_BY_ZERO:
            value = getattr(self, field)
            if value is not None:
                setattr(new, target, value or None)
        return new


# LimitsPatch field -> Limits field: set as given, or with 0 meaning "no limit" (None)
_PATCHED = (("cores", "cores"), ("cpu_weight", "cpu_weight"), ("pids", "pids"),
            ("memory", "memory_bytes"))
_CLEARED_BY_ZERO = (("cpus", "cpus"), ("read_bps", "read_bps"), ("write_bps", "write_bps"),
                    ("read_iops", "read_iops"), ("write_iops", "write_iops"),
                    ("ingress", "ingress_bps"), ("egress", "egress_bps"))


class Reservation(NamedTuple):
    """What an instance holds on its host and counts in its project's quota."""

    cores: int  # exclusive cores
    memory_bytes: int  # 0: no memory limit, so nothing reserved
    pids: int


def reservations(limits: Mapping[str, Any]) -> Reservation:
    """The reservation of limits as stored (`Limits.model_dump()`, an instance row's `limits`):
    the one rule that placement, the capacity ledger and the quotas sum."""
    return Reservation(cores=int(limits.get("cores") or 0),
                       memory_bytes=int(limits.get("memory_bytes") or 0),
                       pids=int(limits.get("pids") or 0))


class Limits(BaseModel):
    """Limits as stored and shown: sizes in bytes, rates in bits/s, cpuset resolved on the
    host. None means "no limit"."""

    cores: int = 0
    cpuset: str = ""
    cpus: float | None = None
    cpu_weight: int | None = None
    memory_bytes: int | None = None
    pids: int = DEFAULT_PIDS
    read_bps: int | None = None
    write_bps: int | None = None
    read_iops: int | None = None
    write_iops: int | None = None
    ingress_bps: int | None = None
    egress_bps: int | None = None

    def reservation(self) -> Reservation:
        return reservations(self.__dict__)


class VolumeSpec(Strict):
    """`NAME:/path[:ro]` (a named volume) or `/host/path:/path[:ro]` (under the allowed root)."""

    source: str = Field(json_schema_extra=VOLUME_SOURCE_SCHEMA)
    target: str = Field(json_schema_extra=CONTAINER_PATH_SCHEMA)
    read_only: bool = False

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith("/")

    @model_validator(mode="after")
    def _check(self) -> VolumeSpec:
        self.target = check_container_path(self.target)
        if self.is_host_path:
            self.source = check_host_path(self.source)
        elif not VOLUME_NAME_RE.match(self.source):
            raise ValueError(f"volume name {self.source!r} is not valid "
                             "(letters, digits, '_', '.', '-'; or an absolute host path)")
        return self

    @classmethod
    def parse(cls, text: str) -> VolumeSpec:
        parts = text.split(":")
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return cls(source=parts[0], target=parts[1], read_only=parts[2] == "ro")
        if len(parts) == 2:
            return cls(source=parts[0], target=parts[1])
        raise ValueError(f"volume {text!r} must be SRC:DST or SRC:DST:ro")


class InstanceCreate(Strict):
    name: Annotated[Name, Field(description="unique in the project; a DNS label",
                                json_schema_extra=NAME_SCHEMA)]
    image: ImageRef = Field(min_length=1, max_length=255,
                            json_schema_extra={"pattern": IMAGE_REF_RE.pattern})
    network: str = "default"
    ip: str | None = Field(None, json_schema_extra={"pattern": IPV4_RE.pattern})
    hostname: str | None = Field(None, json_schema_extra=HOSTNAME_SCHEMA)
    limits: LimitsSpec = Field(default_factory=lambda: LimitsSpec.model_validate({}))
    volumes: list[VolumeSpec] = Field(default_factory=list, max_length=64)
    env: dict[str, str] = Field(default_factory=dict, max_length=256,
                                json_schema_extra=ENV_SCHEMA)
    lxcfs: bool = Field(True, description="the instance's own view of /proc (free, top, "
                        "uptime) through lxcfs")
    cap_add: list[str] = Field(default_factory=list, max_length=64, json_schema_extra={
                                   "items": {"type": "string", "pattern": CAPABILITY_PATTERN}},
                               description="extra Linux capabilities, e.g. NET_ADMIN, or ALL "
                               "(admin only; none by default)")
    ssh_keys: list[str] = Field(default_factory=list, max_length=32, json_schema_extra={
                                    "items": {"type": "string", "pattern": SSH_KEY_PATTERN,
                                              "maxLength": 16384}},
                                description="public keys installed for root (machine images)")
    host: str | None = Field(None, description="place on this host (admin only)")
    type: InstanceType = Field(InstanceType.container, description="container, or vm: a "
                               "QEMU/KVM virtual machine booted from a VM image")
    disk: DiskBytes = Field(None, description="a VM's disk size, e.g. 10G (default: the "
                            "image's); a container's writable layer in a filesystem of "
                            "that size (default: the host's shared disk)")
    constraints: dict[str, str] = Field(default_factory=dict, max_length=32,
                                        json_schema_extra=CONSTRAINTS_SCHEMA,
                                        description="host labels that must equal these values")
    anti_affinity: str | None = Field(None, description="group: no two instances of the "
                                      "same group on one host", json_schema_extra=NAME_SCHEMA)
    spread_group: str | None = Field(None, description="group: rather a host without "
                                     "another instance of the group (soft; a stack's "
                                     "replicas of one service are one)",
                                     json_schema_extra=NAME_SCHEMA)
    strategy: Literal["spread", "pack"] = Field("spread", description="spread: the host "
                                                "with most headroom; pack: the fullest that "
                                                "fits")
    healthcheck: HealthcheckSpec | None = Field(None, description="run by dockerd as a "
                                                "Docker HEALTHCHECK; the health shows in "
                                                "`show`")
    command: list[str] | None = Field(None, max_length=256, description="the container's "
                                      "command (the image's CMD when absent)",
                                      json_schema_extra={"items": {"maxLength": 4096}})
    entrypoint: list[str] | None = Field(None, max_length=256, description="the "
                                         "container's entrypoint (the image's when absent; "
                                         "[]: none)",
                                         json_schema_extra={"items": {"maxLength": 4096}})

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not key or len(key) > 63 or len(val) > 255 or "=" in key:
                raise ValueError(f"constraint {key}={val} must be KEY=VALUE (key 1-63 "
                                 "characters without '=', value up to 255)")
        return value

    @field_validator("cap_add")
    @classmethod
    def _cap_add(cls, value: list[str]) -> list[str]:
        caps = [check_capability(cap) for cap in value]
        return ["ALL"] if "ALL" in caps else sorted(set(caps))

    @field_validator("anti_affinity", "spread_group")
    @classmethod
    def _anti_affinity(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("ssh_keys")
    @classmethod
    def _ssh_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            parts = key.strip().split()
            if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")) \
                    or "\n" in key.strip() or len(key) > 16384:
                raise ValueError("an ssh key must be one line: TYPE BASE64 [COMMENT]")
        return [key.strip() for key in value]

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return None if value is None else check_hostname(value)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 address") from exc

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if len(key) > 255:
                raise ValueError("environment names are at most 255 characters")
            check_env_key(key)
            check_env_value(key, val)
        return value

    @model_validator(mode="after")
    def _targets_unique(self) -> InstanceCreate:
        targets = [v.target for v in self.volumes]
        if len(set(targets)) != len(targets):
            raise ValueError("two volumes have the same target")
        return self

    @model_validator(mode="after")
    def _vm_fields(self) -> InstanceCreate:
        """A VM's memory is its guest's RAM, always reserved: 512M when none is given. What a
        container cannot use is refused rather than ignored."""
        if self.type == InstanceType.vm:
            if self.limits.memory is None:
                self.limits.memory = VM_DEFAULT_MEMORY
            if self.volumes:
                raise ValueError("volumes are not supported on VMs yet")
            if self.limits.egress is not None:
                raise ValueError("egress limits are not supported on VMs yet (--ingress is)")
        return self


class Instance(BaseModel):
    """An instance as the API shows it (`show --json`)."""

    id: str
    name: str
    project: str
    state: InstanceState
    desired_state: DesiredState
    host: str | None
    ip: str
    mac: str
    hostname: str
    image: str
    network: str
    type: InstanceType = InstanceType.container
    container_id: str | None
    generation: int
    limits: Limits
    volumes: list[VolumeSpec]
    env: dict[str, str]
    lxcfs: bool = True
    cap_add: list[str] = Field(default_factory=list)
    health: HealthState = Field(HealthState.none, description="its healthcheck's state as "
                                "dockerd last reported it (none: no healthcheck)")
    message: str | None = None
    created_at: datetime
    updated_at: datetime


class HostVerdict(BaseModel):
    """One host in a placement explanation."""

    host: str
    verdict: Literal["fits", "rejected"]
    reason: str | None = Field(None, description="the first filter that rejected the host")
    score: float | None = Field(None, description="weigher score in [0, 1]; highest wins")


class PlacementExplanation(BaseModel):
    """`POST /v1/instances?explain=true`: where the instance would go, and why; nothing is
    created."""

    chosen: str | None = Field(None, description="the host placement would choose")
    message: str | None = Field(None, description='"no valid host: …" when none fits')
    hosts: list[HostVerdict]


class InstancePatch(Strict):
    """`PATCH /v1/instances/{ref}`: a live resize."""

    limits: LimitsPatch


class Usage(BaseModel):
    """What the instance uses now, read from its cgroups (None: not available)."""

    memory_rss_bytes: int | None
    memory_cache_bytes: int | None
    memory_usage_bytes: int | None
    memory_limit_bytes: int | None
    memory_failcnt: int | None
    oom_kills: int | None
    pids_current: int | None
    pids_limit: int | None


class InstanceAction(StrEnum):
    start = "start"
    stop = "stop"
    restart = "restart"


class ExecRequest(Strict):
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None


class ExecResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
