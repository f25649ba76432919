"""`load_stack`: compose files → `StackSpec`, or one `ComposeError` naming every problem.

    variables = --env-file files (later wins) < the given environment
    each file: YAML (line:column) ─▶ interpolate ─▶ schema (JSON paths) ─▶ normalize
    files merged in order ─▶ Dockyard's supported keys ─▶ StackSpec (paths) ─▶ cross checks

Pure: files arrive as text; a service's `env_file` is read through the `read_file` the
caller gives (the CLI reads beside the compose file; the server, from what was uploaded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from dockyard.compose.build import (
    Problems,
    build_networks,
    build_service,
    build_volumes,
    check_stack_name,
)
from dockyard.compose.buildsrc import Source, build_images, take_sources
from dockyard.compose.envfile import parse_env_file
from dockyard.compose.interpolate import dotted, interpolate_tree
from dockyard.compose.merge import merge, normalize
from dockyard.compose.schema import schema_problems
from dockyard.compose.semantics import check_services, start_order
from dockyard.compose.support import unsupported
from dockyard.compose.tags import Override, load_yaml, strip
from dockyard.errors import InvalidRequest
from dockyard.model.stack import ServiceSpec, StackNetwork, StackSpec, replica_name
from dockyard.model.validators import check_name

MAX_TEXT = 1 << 20  # bytes of one compose file
MAX_VALUES = 100_000  # scalars, mappings and sequences of a file once aliases are expanded


class ComposeError(InvalidRequest):
    """A compose file Dockyard cannot deploy; `problems` holds one `path: message` each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ComposeFile:
    name: str  # shown in messages, e.g. "compose.yaml"
    text: str


@dataclass(frozen=True)
class LoadedStack:
    spec: StackSpec
    warnings: tuple[str, ...]  # unset variables (Compose warns and uses "")


def _no_files(path: str) -> str:
    raise OSError(f"{path}: no files are available")


def load_stack(files: Sequence[ComposeFile], *, name: str | None = None,
               environ: Mapping[str, str] | None = None,
               env_files: Sequence[ComposeFile] = (),
               read_file: Callable[[str], str] = _no_files,
               build: Callable[[str, Source], str] | None = None) -> LoadedStack:
    """`build`: builds a service's `build:` source and answers its image (compose/buildsrc.py);
    without it `build:` is refused."""
    if not files:
        raise ComposeError(["no compose file given"])
    try:
        variables = resolve_variables(environ or {}, env_files)
    except InvalidRequest as exc:
        raise ComposeError([exc.message]) from exc
    warnings: list[str] = []
    trees = [_read(file, variables, warnings, multiple=len(files) > 1) for file in files]
    merged: dict[str, Any] = {}
    for tree in trees:
        merged = merge(merged, tree)
    sources, problems = take_sources(merged) if build is not None else ({}, [])
    problems += unsupported(merged)
    if problems:
        raise ComposeError(problems)
    if build is not None:
        build_images(merged, sources, build)
    spec = _build(merged, name, variables, read_file)
    return LoadedStack(spec=spec, warnings=tuple(warnings))


def resolve_variables(environ: Mapping[str, str],
                      env_files: Sequence[ComposeFile]) -> dict[str, str]:
    """The interpolation variables: env files in order, the environment over them."""
    variables: dict[str, str] = {}
    for env in env_files:
        variables.update(parse_env_file(env.text, {**variables, **environ}, source=env.name))
    variables.update(environ)
    return variables


def _read(file: ComposeFile, variables: Mapping[str, str], warnings: list[str],
          multiple: bool) -> dict[str, Any]:
    if len(file.text.encode()) > MAX_TEXT:
        raise ComposeError([f"{file.name}: larger than {MAX_TEXT} bytes"])
    try:
        tree = load_yaml(file.text)
    except RecursionError as exc:
        raise ComposeError([f"{file.name}: nested too deeply"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ComposeError([f"{file.name}: invalid YAML at {where}: {problem}"]) from exc
    if tree is None:
        raise ComposeError([f"{file.name}: the file is empty"])
    if not isinstance(tree, dict):
        raise ComposeError([f"{file.name}: the top level must be a mapping "
                            f"(services: …), not {type(tree).__name__}"])
    if _too_many_values(tree):
        raise ComposeError([f"{file.name}: more than {MAX_VALUES} values once YAML aliases "
                            "are expanded"])
    prefix = f"{file.name}: " if multiple else ""
    bad_keys = _non_string_keys(tree)
    if bad_keys:
        raise ComposeError([f"{prefix}{p}" for p in bad_keys])
    if "version" in tree:
        warnings.append(f"{file.name}: `version` is obsolete and ignored")
    try:
        tree = interpolate_tree(tree, variables.get, warnings)
    except InvalidRequest as exc:
        raise ComposeError([prefix + exc.message]) from exc
    problems = schema_problems(strip(tree))
    if problems:
        raise ComposeError([prefix + p for p in problems])
    normalized: dict[str, Any] = normalize(tree)
    return normalized


def _too_many_values(tree: Any) -> bool:
    """True for an alias bomb ("billion laughs") or a recursive alias: the later stages walk
    the tree as if every alias were a copy."""
    budget = MAX_VALUES
    pending = [tree]
    while pending:
        node = pending.pop()
        budget -= 1
        if budget < 0:
            return True
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, Override):
            pending.append(node.value)
    return False


def _non_string_keys(tree: Any) -> list[str]:
    """`path: ...` for each mapping key that YAML read as a number, boolean or null (the
    schema's key patterns apply to strings only)."""
    problems: list[str] = []
    pending: list[tuple[tuple[str, ...], Any]] = [((), tree)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, Override):
            pending.append((path, node.value))
        elif isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    problems.append(f"{dotted((*path, str(key)))}: keys must be strings "
                                    f"(quote {key!r})")
                else:
                    pending.append(((*path, key), value))
        elif isinstance(node, list):
            pending.extend(((*path, f"[{i}]"), item) for i, item in enumerate(node))
    return sorted(problems)


def _build(tree: Mapping[str, Any], name: str | None, variables: Mapping[str, str],
           read_file: Callable[[str], str]) -> StackSpec:
    problems = Problems()
    stack = name or tree.get("name")
    if not stack:
        raise ComposeError(["name: the stack needs a name (give one, or `name:` in the file)"])
    check_stack_name(str(stack), problems)
    if not tree.get("services"):
        problems.add(("services",), "the stack has no services")
    networks = build_networks(tree, str(stack), problems)
    volumes = build_volumes(tree, str(stack), problems)
    services: dict[str, ServiceSpec] = {}
    for svc_name, body in (tree.get("services") or {}).items():
        check_replica_name(str(stack), svc_name, problems)
        svc = build_service(svc_name, body or {}, variables, read_file, volumes, problems)
        if svc is not None:
            services[svc_name] = svc
    if not problems.items:
        check_services(services, networks, problems)
    if problems.items:
        raise ComposeError(problems.items)
    if "default" not in networks and any(net.name == "default" for svc in services.values()
                                         for net in svc.networks):
        networks["default"] = StackNetwork(name=f"{stack}-default")
    # check_services refused cycles, so the order exists
    graph = {svc_name: list(svc.depends_on) for svc_name, svc in services.items()}
    return StackSpec(name=str(stack), services=services, networks=networks, volumes=volumes,
                     start_order=start_order(graph))


def check_replica_name(stack: str, service: str, problems: Problems) -> None:
    example = replica_name(stack, service, 1)
    try:
        check_name(example)
    except ValueError as exc:
        problems.add(("services", service), f"its replicas would be named {example!r}, which "
                                            f"is not a valid instance name: {exc}")
