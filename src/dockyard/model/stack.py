"""Stack specs: what a compose file asks for, in Dockyard's terms (compose/ builds them).

A `StackSpec` is fully resolved: interpolated, merged, validated, defaults filled (Docker's
healthcheck defaults, Compose's update_config defaults), sizes in bytes, durations in
seconds. Replicas of service `web` in stack `shop` are the instances `shop-web-1`,
`shop-web-2`, … (`replica_name`).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from dockyard.model.health import HealthcheckSpec, parse_duration
from dockyard.model.instance import LimitsSpec
from dockyard.model.validators import (
    VOLUME_NAME_RE,
    Name,
    check_container_path,
    check_env_key,
    check_env_value,
)


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpdateOrder(StrEnum):
    start_first = "start-first"
    stop_first = "stop-first"


class FailureAction(StrEnum):
    continue_ = "continue"
    pause = "pause"
    rollback = "rollback"


class UpdateConfig(Frozen):
    """`deploy.update_config` / `rollback_config` with Compose's defaults. `parallelism` 0
    means all at once (as Docker); `monitor` None means the healthcheck's own time."""

    parallelism: Annotated[int, Field(ge=0)] = 1
    delay: float = 0.0
    failure_action: FailureAction = FailureAction.pause
    monitor: float | None = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    order: UpdateOrder = UpdateOrder.stop_first

    @field_validator("delay", "monitor", mode="before")
    @classmethod
    def _duration(cls, value: str | float | None) -> float | None:
        return None if value is None else parse_duration(value)

    def monitor_for(self, health: HealthcheckSpec | None) -> float:
        """The monitor window for a new replica: the given `monitor`, never less than the
        healthcheck's start_period + interval × retries (issue #12)."""
        floor = health.monitor_default() if health is not None else 0.0
        return max(self.monitor or 0.0, floor)


class DependencyCondition(StrEnum):
    service_started = "service_started"
    service_healthy = "service_healthy"


class ServiceNetwork(Frozen):
    name: str
    ipv4_address: str | None = None


class ServiceVolume(Frozen):
    """A mount of one of the stack's volumes (`source` is a key of `StackSpec.volumes`)."""

    source: str
    target: str
    read_only: bool = False

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return check_container_path(value)


class HttpEntrance(Frozen):
    """`x-dockyard: {http: {host, port}}`: published through the stack's entrance."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)]


class RestartPolicy(StrEnum):
    no = "no"
    always = "always"
    on_failure = "on-failure"
    unless_stopped = "unless-stopped"


class Reservations(Frozen):
    cpus: float | None = None
    memory_bytes: int | None = None


class ServiceSpec(Frozen):
    name: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    hostname: str | None = None
    networks: tuple[ServiceNetwork, ...] = ()
    volumes: tuple[ServiceVolume, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    healthcheck: HealthcheckSpec | None = None
    depends_on: dict[str, DependencyCondition] = Field(default_factory=dict)
    restart: RestartPolicy = RestartPolicy.no
    replicas: Annotated[int, Field(ge=0)] = 1
    limits: LimitsSpec = Field(default_factory=lambda: LimitsSpec.model_validate({}))
    reservations: Reservations = Field(default_factory=Reservations)
    constraints: dict[str, str] = Field(default_factory=dict)
    update_config: UpdateConfig = Field(default_factory=lambda: UpdateConfig())
    rollback_config: UpdateConfig = Field(default_factory=lambda: UpdateConfig())
    http: HttpEntrance | None = None
    spread: StrictBool = Field(True, description="`x-dockyard.spread`: the replicas rather "
                               "on different hosts (a soft spread group); false: by "
                               "capacity alone")

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            check_env_key(key)
            check_env_value(key, val)
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("dockyard.") or not key or len(key) > 255:
                raise ValueError(f"label {key[:64]!r}: keys are 1-255 characters and "
                                 "'dockyard.' is Dockyard's own prefix")
        return value

    @field_validator("volumes")
    @classmethod
    def _targets_unique(cls, value: tuple[ServiceVolume, ...]) -> tuple[ServiceVolume, ...]:
        targets = [vol.target for vol in value]
        if len(set(targets)) != len(targets):
            raise ValueError("two volumes have the same target")
        return value

    @property
    def fixed_ip(self) -> bool:
        return any(net.ipv4_address for net in self.networks)


class StackNetwork(Frozen):
    """A network of the stack: created for it (`subnet` optional) or an existing Dockyard
    network (`external`). `name` is the Dockyard network's name (compose/build.py:
    `dockyard_name`); `StackSpec.networks` is keyed by the file's name, `default` included
    when a service uses it."""

    name: Name
    external: bool = False
    subnet: str | None = None
    gateway: str | None = None

    @model_validator(mode="after")
    def _addresses(self) -> StackNetwork:
        if self.subnet is not None:
            try:
                net = ipaddress.IPv4Network(self.subnet, strict=False)
            except ValueError as exc:
                raise ValueError(f"subnet {self.subnet!r} is not an IPv4 network") from exc
            if self.gateway is not None:
                try:
                    inside = ipaddress.IPv4Address(self.gateway) in net
                except ValueError as exc:
                    raise ValueError(f"gateway {self.gateway!r} is not an IPv4 address") \
                        from exc
                if not inside:
                    raise ValueError(f"gateway {self.gateway} is not in {self.subnet}")
        return self


class StackVolume(Frozen):
    """A volume of the stack: created for it, or an existing one of the project (`external`)."""

    name: str
    external: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VOLUME_NAME_RE.match(value):
            raise ValueError(f"volume name {value!r} must be 1-63 characters of lower-case "
                             "letters, digits, '_', '.' and '-'")
        return value


class StackSpec(Frozen):
    name: str
    services: dict[str, ServiceSpec]
    networks: dict[str, StackNetwork] = Field(default_factory=dict)
    volumes: dict[str, StackVolume] = Field(default_factory=dict)
    start_order: tuple[str, ...] = Field(
        (), description="services in a first-start order that honours depends_on")

    def replica_name(self, service: str, index: int) -> str:
        return replica_name(self.name, service, index)


def replica_name(stack: str, service: str, index: int) -> str:
    return f"{stack}-{service}-{index}"


class StackScale(Frozen):
    """`POST /v1/stacks/{name}/scale`: new replica counts by service."""

    replicas: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(min_length=1)


class ReplicaView(BaseModel):
    """A replica as `stack ps` shows it; `state` None: no live instance (being replaced)."""

    name: str
    service: str
    slot: int
    version: int = Field(description="the service's template generation it was made from")
    instance: str | None
    state: str | None
    health: str | None = Field(None, description="dockerd's health of its container: "
                               "healthy, unhealthy, starting, none (no healthcheck)")
    host: str | None
    ip: str | None


class ServiceView(BaseModel):
    name: str
    image: str
    replicas: int
    running: int
    version: int


class StackView(BaseModel):
    name: str
    project: str
    version: int
    status: str = Field("converged", description="converged | converging | updating | "
                        "rolling_back | paused (a rollout stopped for an operator)")
    status_reason: str | None = None
    services: list[ServiceView]
    replicas: list[ReplicaView]
    spec: StackSpec
    created_at: str
    updated_at: str


class DeployResult(StackView):
    changed: bool = Field(description="false: the stack already was as asked; nothing was "
                          "done")
    actions: list[str] = Field(description="what was done, in order")
    operations: list[str] = Field(description="the create operations of new replicas")


class VersionView(BaseModel):
    """One version of a stack as `stack history` shows it."""

    version: int
    current: bool
    note: str = Field(description="deploy, scale, rollback to N, failed: …")
    services: dict[str, str] = Field(description="service → image")
    created_at: str


class StackRollback(Frozen):
    """`POST /v1/stacks/{name}/rollback`: back to the previous version (one service only
    when `service` is given)."""

    service: str | None = None
