"""A stack's services as ordinary instances: what this first slice deploys, and how.

    StackSpec ─▶ not_yet(spec): the parts deploy cannot honour yet, each `path: reason`
              ─▶ instance_spec(spec, service, slot): the InstanceCreate of STACK-SERVICE-N
              ─▶ template_hash(service): what makes a replica out of date (not `replicas`)

Networks: a service's network `default` that the file does not define (no subnet, not
external) is the project's Dockyard network `default`; an `external` one is the Dockyard
network of that name. Networks created for a stack come later. A replica's hostname is the
compose `hostname`, else its instance name. A replica's health for the planner comes from
`health_of`. Pure: model only.
"""

from __future__ import annotations

import hashlib
import json

from dockyard.model.health import HealthState
from dockyard.model.instance import InstanceCreate, InstanceState, VolumeSpec
from dockyard.model.stack import ServiceSpec, StackSpec, replica_name
from dockyard.stacks.planner import Health

NOT_YET = "not supported yet by `stack deploy` (issue #12)"


def not_yet(spec: StackSpec) -> list[str]:
    """Keys of a valid spec that deploy cannot honour yet: refused, never ignored."""
    problems = []
    for name, svc in sorted(spec.services.items()):
        path = f"services.{name}"
        if svc.reservations.cpus is not None or svc.reservations.memory_bytes is not None:
            problems.append(f"{path}.deploy.resources.reservations: {NOT_YET}")
    for key, net in sorted(spec.networks.items()):
        if not net.external and (key != "default" or net.subnet is not None):
            problems.append(f"networks.{key}: networks created for a stack are {NOT_YET}; "
                            "declare it `external: true` to use an existing Dockyard "
                            "network")
    return problems


def network_of(spec: StackSpec, service: ServiceSpec) -> tuple[str, str | None]:
    """(the Dockyard network, the fixed address or None) of the service's one network."""
    net = service.networks[0] if service.networks else None
    key = net.name if net else "default"
    stack_net = spec.networks.get(key)
    name = stack_net.name if stack_net is not None and stack_net.external else "default"
    return name, net.ipv4_address if net else None


def spread_group(stack: str, service: str) -> str:
    """The soft spread group of a service's replicas: they go to different hosts while there
    are hosts without one (scheduler/weighers.GroupSpreadWeigher). Its name is the replicas'
    without the slot; groups are cluster-wide, so two projects' stacks of one name share
    one (they only spread together)."""
    return f"{stack}-{service}"


def instance_spec(spec: StackSpec, service: str, slot: int) -> InstanceCreate:
    svc = spec.services[service]
    network, ip = network_of(spec, svc)
    name = replica_name(spec.name, service, slot)
    return InstanceCreate.model_validate({
        "name": name, "image": svc.image, "network": network, "ip": ip,
        "spread_group": spread_group(spec.name, service) if svc.spread else None,
        "hostname": svc.hostname, "limits": svc.limits, "env": dict(svc.environment),
        "constraints": dict(svc.constraints), "healthcheck": svc.healthcheck,
        "command": list(svc.command) if svc.command is not None else None,
        "entrypoint": list(svc.entrypoint) if svc.entrypoint is not None else None,
        "volumes": [VolumeSpec(source=spec.volumes[v.source].name, target=v.target,
                               read_only=v.read_only) for v in svc.volumes]})


def template_hash(service: ServiceSpec) -> str:
    """A digest of everything of a service but `replicas`: a change replaces its replicas."""
    # `spread` left out at its default: the hash of a service from before it stays the same
    body = service.model_dump(mode="json", exclude={"replicas", "spread"} if service.spread
                              else {"replicas"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def health_of(state: str | None, docker: str, up_for: float | None,
              monitor: float) -> Health:
    """A replica's health for the planner, from its instance's state, dockerd's health of
    its container and how long it has been seen running (`up_for`, seconds; None: not yet):

        creating / starting                         ─▶ starting
        running, healthy                            ─▶ healthy
        running, inside its monitor window          ─▶ starting (it may still get there)
        running, window over: no healthcheck        ─▶ healthy, else ─▶ unhealthy
        anything else (stopped, error, gone)        ─▶ unhealthy
    """
    if state in (InstanceState.creating, InstanceState.starting):
        return Health.starting
    if state != InstanceState.running:
        return Health.unhealthy
    if docker == HealthState.healthy:
        return Health.healthy
    if up_for is None or up_for < monitor:
        return Health.starting
    return Health.healthy if docker == HealthState.none else Health.unhealthy
