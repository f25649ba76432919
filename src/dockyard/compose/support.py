"""What Dockyard implements of the Compose Specification, as a tree of allowed keys.

A key outside `SUPPORTED` is refused with its path (`services.web.cap_add: not supported`),
never silently ignored. `x-` extension keys are accepted anywhere (YAML anchors live there)
except inside `x-dockyard`, whose keys are Dockyard's own and checked here too.
"""

from __future__ import annotations

from typing import Any

from dockyard.compose.interpolate import dotted

# ANY: any value (the schema checked its shape); a dict: these keys, recursively;
# EACH: the same rule for every key of a mapping (service names, env names).
ANY = "any"
EACH = "*"

_UPDATE = {key: ANY for key in ("parallelism", "delay", "failure_action", "monitor",
                                "max_failure_ratio", "order")}
_SERVICE: dict[str, Any] = {
    "image": ANY, "command": ANY, "entrypoint": ANY, "environment": ANY, "env_file": ANY,
    "hostname": ANY, "labels": ANY, "restart": ANY,
    "volumes": ANY,  # each entry is checked when it is read (build.py)
    "networks": {EACH: {"ipv4_address": ANY}},
    "healthcheck": {key: ANY for key in ("test", "interval", "timeout", "retries",
                                         "start_period", "disable")},
    "depends_on": {EACH: {"condition": ANY}},
    "deploy": {
        "replicas": ANY,
        "resources": {"limits": {"cpus": ANY, "memory": ANY, "pids": ANY},
                      "reservations": {"cpus": ANY, "memory": ANY}},
        "placement": {"constraints": ANY},
        "update_config": _UPDATE, "rollback_config": _UPDATE,
    },
    "x-dockyard": {"cores": ANY, "http": {"host": ANY, "port": ANY}, "spread": ANY},
}
SUPPORTED: dict[str, Any] = {
    "version": ANY,  # obsolete, informative only (as Compose)
    "name": ANY,
    "services": {EACH: _SERVICE},
    "networks": {EACH: {"external": ANY, "name": ANY, "ipam": {"config": ANY}}},
    "volumes": {EACH: {"external": ANY, "name": ANY}},
}
# Refused with a more useful sentence than "not supported".
REASONS: dict[tuple[str, ...], str] = {
    ("services", EACH, "build"): "not supported yet (builds)",
    ("services", EACH, "ports"): "not supported yet: publish an HTTP service through the "
                                 "entrance with x-dockyard: {http: {host, port}}",
    ("services", EACH, "container_name"): "not supported: replicas are named "
                                          "STACK-SERVICE-N",
}


def unsupported(tree: dict[str, Any]) -> list[str]:
    """`path: not supported` for every key of the merged tree Dockyard does not implement."""
    problems: list[str] = []
    _walk(tree, SUPPORTED, (), (), problems)
    return problems


def _walk(value: Any, rule: Any, path: tuple[str, ...], pattern: tuple[str, ...],
          problems: list[str]) -> None:
    if rule == ANY or not isinstance(value, dict):
        return
    for key, sub in value.items():
        key = str(key)
        if EACH in rule:
            _walk(sub, rule[EACH], (*path, key), (*pattern, EACH), problems)
        elif key in rule:
            _walk(sub, rule[key], (*path, key), (*pattern, key), problems)
        elif key.startswith("x-") and "x-dockyard" not in path:
            continue
        else:
            reason = REASONS.get((*pattern, key), "not supported")
            problems.append(f"{dotted((*path, key))}: {reason}")
