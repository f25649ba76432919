"""Multi-file merge (`-f a.yaml -f b.yaml`) by the Compose Specification's merge rules.

    mapping    merged key by key, recursively; the later file wins a conflict
    sequence   the later file's items are appended
    except     command, entrypoint, healthcheck.test: replaced by the later file
               volumes (key: target), ports (key: ip, target, published, protocol),
               secrets / configs (key: source): an item with the same key is replaced
               in place, others appended

An override file can also say `!reset` (remove the value: the key is dropped, the default
applies) or `!override VALUE` (replace instead of merging); `strip` resolves these tags in a
file taken alone (for the schema, and in the first file).

Before merging, each file is normalized so the two spellings Compose allows merge as one:
`environment` / `labels` / `deploy.labels` lists (`K=V`) become mappings, `depends_on` and
`networks` lists become mappings, a string `env_file` a list. Shapes the normalizer does not
recognize are left as they are, for the schema to name.
"""

from __future__ import annotations

from typing import Any

from dockyard.compose.tags import Override, Reset, strip


def _inside(value: Any, change: Any) -> Any:
    """`change(value)`, applied inside an `!override` wrapper too."""
    return Override(change(value.value)) if isinstance(value, Override) else change(value)


_REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}
_UNIQUE = {"volumes", "ports", "secrets", "configs"}


def normalize(tree: Any) -> Any:
    """A file's tree with the list spellings of keyed service fields turned into mappings."""
    if not isinstance(tree, dict) or not isinstance(tree.get("services"), dict):
        return tree
    services = {name: _normalize_service(svc) if isinstance(svc, dict) else svc
                for name, svc in tree["services"].items()}
    return {**tree, "services": services}


def _normalize_service(svc: dict[str, Any]) -> dict[str, Any]:
    svc = dict(svc)
    for key in ("environment", "labels"):
        if svc.get(key) is None:
            svc.pop(key, None)
        else:
            svc[key] = _inside(svc[key], _list_to_dict)
    if isinstance(svc.get("deploy"), dict) and "labels" in svc["deploy"]:
        svc["deploy"] = {**svc["deploy"],
                         "labels": _inside(svc["deploy"]["labels"], _list_to_dict)}
    for key in ("depends_on", "networks"):
        if key in svc:
            svc[key] = _inside(svc[key], _list_to_mapping if key == "networks"
                               else _list_to_dependencies)
    if "env_file" in svc:
        svc["env_file"] = _inside(svc["env_file"],
                                  lambda value: [value] if isinstance(value, str) else value)
    return svc


def _list_to_mapping(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return {item: None for item in value}
    return value


def _list_to_dependencies(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return {item: {"condition": "service_started"} for item in value}
    return value


def _list_to_dict(value: Any) -> Any:
    """`["A=1", "B"]` → `{"A": "1", "B": None}` (None: take the value from the environment)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return value
    result: dict[str, str | None] = {}
    for item in value:
        key, equals, val = item.partition("=")
        result[key] = val if equals else None
    return result


def merge(base: Any, override: Any) -> Any:
    """Two normalized files merged into one tree (neither argument is changed); the result
    holds no `Reset` / `Override`."""
    return _merge(base, override, ())


def _merge(base: Any, override: Any, path: tuple[str, ...]) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = strip(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif key in merged and not isinstance(value, Override):
                merged[key] = _merge(merged[key], value, (*path, str(key)))
            else:
                merged[key] = strip(value)
        return merged
    service_key = path[2:] if len(path) >= 3 and path[0] == "services" else ()
    if isinstance(base, list) and isinstance(override, list) and service_key not in _REPLACED:
        if len(service_key) == 1 and service_key[0] in _UNIQUE:
            return _merge_unique(base, strip(override), service_key[0])
        return [*base, *strip(override)]
    return strip(override)


def _merge_unique(base: list[Any], override: list[Any], field: str) -> list[Any]:
    merged = list(base)
    index = {_unique_key(item, field): pos for pos, item in enumerate(merged)}
    for item in override:
        key = _unique_key(item, field)
        if key in index:
            merged[index[key]] = item
        else:
            index[key] = len(merged)
            merged.append(item)
    return merged


def _unique_key(item: Any, field: str) -> Any:
    if field == "volumes":
        return volume_target(item)
    if field == "ports":
        if isinstance(item, dict):
            return ("port", item.get("host_ip"), str(item.get("target")),
                    str(item.get("published")), item.get("protocol", "tcp"))
        return ("port", str(item))
    if isinstance(item, dict):
        return ("source", item.get("source"))
    return ("source", item)


def volume_target(item: Any) -> Any:
    """The container path of a service volume, short (`src:/dst[:mode]`, `/dst`) or long."""
    if isinstance(item, dict):
        return item.get("target")
    if isinstance(item, str):
        parts = item.split(":")
        return parts[1] if len(parts) >= 2 else parts[0]
    return repr(item)
