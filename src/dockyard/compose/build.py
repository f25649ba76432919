"""The merged, schema-valid, supported tree → `StackSpec`, every problem named by its path.

Compose spellings become Dockyard's terms here and nowhere else: a string command is split
as a shell would, `env_file` contents come before `environment`, short volume strings are
read, `node.labels.K==V` constraints become host-label constraints, limits become a
`LimitsSpec` (memory in bytes), durations seconds, and the healthcheck and update configs
get Docker's / Compose's defaults.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from dockyard.compose.envfile import parse_env_file
from dockyard.compose.interpolate import dotted
from dockyard.errors import InvalidRequest
from dockyard.model.health import HealthcheckSpec, parse_duration
from dockyard.model.instance import LimitsSpec
from dockyard.model.stack import (
    HttpEntrance,
    Reservations,
    ServiceNetwork,
    ServiceSpec,
    ServiceVolume,
    StackNetwork,
    StackVolume,
    UpdateConfig,
)
from dockyard.model.units import parse_size
from dockyard.model.validators import check_hostname, check_image_ref, check_name

ReadFile = Callable[[str], str]
Path = tuple[str | int, ...]


class Problems:
    """Collects `path: message` lines so one answer names every problem of a file."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: Path, message: str) -> None:
        self.items.append(f"{dotted(path)}: {message}")

    def model(self, path: Path, cls: type[BaseModel], data: dict[str, Any]) -> Any:
        """`cls(**data)`, or None with each validation error added under `path`."""
        try:
            return cls(**data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(str(part) for part in err["loc"])
                self.add((*path, *loc), str(err["msg"]).removeprefix("Value error, "))
            return None


def dockyard_name(stack: str, key: str, body: Mapping[str, Any]) -> str:
    """The Dockyard name of a stack's network or volume: `name:` if given; an external one
    is otherwise named by its key, one created for the stack `STACK-KEY` (Compose says
    `project_key`; Dockyard names have no '_')."""
    if body.get("name"):
        return str(body["name"])
    return key if body.get("external") else f"{stack}-{key}"


def build_networks(tree: Mapping[str, Any], stack: str,
                   problems: Problems) -> dict[str, StackNetwork]:
    result: dict[str, StackNetwork] = {}
    for name, body in (tree.get("networks") or {}).items():
        body = body or {}
        path: Path = ("networks", name)
        subnet = gateway = None
        configs = (body.get("ipam") or {}).get("config") or []
        if len(configs) > 1:
            problems.add((*path, "ipam", "config"), "one subnet per network is supported")
        for pos, conf in enumerate(configs[:1]):
            for key in sorted(set(conf) - {"subnet", "gateway"}):
                problems.add((*path, "ipam", "config", pos, key), "not supported")
            subnet, gateway = conf.get("subnet"), conf.get("gateway")
        external = bool(body.get("external"))
        net = problems.model(path, StackNetwork, {
            "name": dockyard_name(stack, name, body), "external": external,
            "subnet": subnet, "gateway": gateway})
        if net is not None:
            result[name] = net
    return result


def build_volumes(tree: Mapping[str, Any], stack: str,
                  problems: Problems) -> dict[str, StackVolume]:
    result: dict[str, StackVolume] = {}
    for name, body in (tree.get("volumes") or {}).items():
        body = body or {}
        vol = problems.model(("volumes", name), StackVolume, {
            "name": dockyard_name(stack, name, body), "external": bool(body.get("external"))})
        if vol is not None:
            result[name] = vol
    return result


def build_service(name: str, svc: Mapping[str, Any], environ: Mapping[str, str],
                  read_file: ReadFile, volumes: Mapping[str, StackVolume],
                  problems: Problems) -> ServiceSpec | None:
    path: Path = ("services", name)
    before = len(problems.items)
    image = svc.get("image")
    if not image:
        problems.add((*path, "image"), "required (Dockyard runs images; builds come later)")
    else:
        _check(problems, (*path, "image"), check_image_ref, str(image))
    if svc.get("hostname") is not None:
        _check(problems, (*path, "hostname"), check_hostname, str(svc["hostname"]))
    deploy = svc.get("deploy") or {}
    dockyard = svc.get("x-dockyard") or {}
    data: dict[str, Any] = {
        "name": name,
        "image": str(image or ""),
        "command": _argv(svc.get("command")),
        "entrypoint": _argv(svc.get("entrypoint")),
        "environment": _environment(path, svc, environ, read_file, problems),
        "hostname": svc.get("hostname"),
        "networks": _networks(svc.get("networks")),
        "volumes": _volumes(path, svc.get("volumes") or [], volumes, problems),
        "labels": _strings(svc.get("labels") or {}),
        "healthcheck": _healthcheck(path, svc.get("healthcheck"), problems),
        "depends_on": _depends_on(path, svc.get("depends_on") or {}, problems),
        "restart": svc.get("restart", "no"),
        "replicas": deploy.get("replicas", 1),
        "limits": _limits(path, deploy, dockyard, problems),
        "reservations": _reservations(path, deploy, problems),
        "constraints": _constraints(path, deploy, problems),
    }
    for key in ("update_config", "rollback_config"):
        data[key] = problems.model((*path, "deploy", key), UpdateConfig, deploy.get(key) or {})
    if "spread" in dockyard:
        if isinstance(dockyard["spread"], bool):
            data["spread"] = dockyard["spread"]
        else:
            problems.add((*path, "x-dockyard", "spread"), "must be true or false")
    if "http" in dockyard:
        data["http"] = problems.model((*path, "x-dockyard", "http"), HttpEntrance,
                                      dockyard["http"] or {})
    if len(problems.items) > before:
        return None
    spec: ServiceSpec | None = problems.model(path, ServiceSpec, data)
    return spec


def _check(problems: Problems, path: Path, check: Callable[[str], str], value: str) -> None:
    try:
        check(value)
    except ValueError as exc:
        problems.add(path, str(exc))


def _argv(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(str(item) for item in value)


def _strings(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): _scalar(value) for key, value in mapping.items()}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _environment(path: Path, svc: Mapping[str, Any], environ: Mapping[str, str],
                 read_file: ReadFile, problems: Problems) -> dict[str, str]:
    """env_file values first (in order), then `environment`; `KEY` alone (None) takes the
    value from the deploy environment and is left out when that has none, as Compose."""
    env: dict[str, str] = {}
    for pos, ref in enumerate(svc.get("env_file") or []):
        where = (*path, "env_file", pos)
        try:
            env.update(parse_env_file(read_file(str(ref)), environ, source=str(ref)))
        except InvalidRequest as exc:
            problems.add(where, exc.message)
        except (OSError, KeyError):
            problems.add(where, f"cannot read {ref!r}")
    for key, value in (svc.get("environment") or {}).items():
        if value is None:
            if key in environ:
                env[str(key)] = environ[key]
        else:
            env[str(key)] = _scalar(value)
    return env


def _networks(value: Any) -> tuple[ServiceNetwork, ...]:
    if not value:
        return (ServiceNetwork(name="default"),)
    return tuple(ServiceNetwork(name=str(name), ipv4_address=(body or {}).get("ipv4_address"))
                 for name, body in value.items())


def _volumes(path: Path, items: list[Any], declared: Mapping[str, StackVolume],
             problems: Problems) -> tuple[ServiceVolume, ...]:
    result: list[ServiceVolume] = []
    for pos, item in enumerate(items):
        where = (*path, "volumes", pos)
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                problems.add(where, "anonymous volumes are not supported (name the volume)")
                continue
            mode = parts[2] if len(parts) > 2 else "rw"
            if len(parts) > 3 or mode not in ("ro", "rw"):
                problems.add(where, f"{item!r}: write VOLUME:/path or VOLUME:/path:ro")
                continue
            data = {"type": "volume", "source": parts[0], "target": parts[1],
                    "read_only": mode == "ro"}
        else:
            data = dict(item)
            for key in sorted(set(data) - {"type", "source", "target", "read_only"}):
                problems.add((*where, key), "not supported")
        if data.get("type") != "volume" or str(data.get("source", "")).startswith(
                ("/", ".", "~")):
            problems.add(where, "only named volumes are supported (no bind mounts, tmpfs)")
            continue
        if data.get("source") not in declared:
            problems.add(where, f"volume {data.get('source')!r} is not declared in the "
                                "top-level volumes")
            continue
        vol = problems.model(where, ServiceVolume, {
            "source": data["source"], "target": data.get("target"),
            "read_only": bool(data.get("read_only", False))})
        if vol is not None:
            result.append(vol)
    return tuple(result)


def _healthcheck(path: Path, body: Any, problems: Problems) -> HealthcheckSpec | None:
    if not body or body.get("disable"):
        return None
    test = body.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not test or test[0] == "NONE":
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        problems.add((*path, "healthcheck", "test"), "must be a string, [CMD, arg…], "
                     "[CMD-SHELL, command] or [NONE]")
        return None
    data = {key: body[key] for key in ("interval", "timeout", "retries", "start_period")
            if key in body}
    for key in ("interval", "timeout", "start_period"):  # the model takes seconds only
        if key in data:
            try:
                data[key] = parse_duration(data[key])
            except ValueError as exc:
                problems.add((*path, "healthcheck", key), str(exc))
                return None
    spec: HealthcheckSpec | None = problems.model(
        (*path, "healthcheck"), HealthcheckSpec, {"test": tuple(map(str, test)), **data})
    return spec


def _depends_on(path: Path, body: Mapping[str, Any], problems: Problems) -> dict[str, str]:
    result: dict[str, str] = {}
    for dep, cond in body.items():
        condition = (cond or {}).get("condition", "service_started")
        if condition not in ("service_started", "service_healthy"):
            problems.add((*path, "depends_on", dep, "condition"),
                         f"{condition!r} is not supported (service_started, service_healthy)")
        result[str(dep)] = condition
    return result


def _limits(path: Path, deploy: Mapping[str, Any], dockyard: Mapping[str, Any],
            problems: Problems) -> LimitsSpec | None:
    limits = (deploy.get("resources") or {}).get("limits") or {}
    data: dict[str, Any] = {"cores": dockyard.get("cores", 0)}
    if "cpus" in limits:
        data["cpus"] = _float(limits["cpus"])
    if "memory" in limits:
        data["memory"] = limits["memory"]
    if "pids" in limits:
        data["pids"] = limits["pids"]
    spec: LimitsSpec | None = problems.model((*path, "deploy", "resources", "limits"),
                                             LimitsSpec, data)
    return spec


def _reservations(path: Path, deploy: Mapping[str, Any],
                  problems: Problems) -> Reservations | None:
    body = (deploy.get("resources") or {}).get("reservations") or {}
    where = (*path, "deploy", "resources", "reservations")
    memory = None
    if "memory" in body:
        try:
            memory = parse_size(body["memory"])
        except ValueError as exc:
            problems.add((*where, "memory"), str(exc))
    spec: Reservations | None = problems.model(where, Reservations, {
        "cpus": _float(body["cpus"]) if "cpus" in body else None, "memory_bytes": memory})
    return spec


def _float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # pydantic names the path and the value


def _constraints(path: Path, deploy: Mapping[str, Any], problems: Problems) -> dict[str, str]:
    result: dict[str, str] = {}
    for pos, text in enumerate((deploy.get("placement") or {}).get("constraints") or []):
        key, equals, value = str(text).partition("==")
        key = key.strip()
        if not equals or not key.startswith("node.labels.") or not value.strip():
            problems.add((*path, "deploy", "placement", "constraints", pos),
                         f"{text!r}: only node.labels.KEY==VALUE is supported")
            continue
        result[key.removeprefix("node.labels.")] = value.strip()
    return result


def check_stack_name(name: str, problems: Problems) -> None:
    _check(problems, ("name",), check_name, name)
