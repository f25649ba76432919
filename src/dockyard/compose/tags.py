"""YAML as Compose reads it: the YAML 1.2 core schema, and the merge tags `!reset` and
`!override` (the spec's merge rules).

PyYAML implements YAML 1.1, where `no`, `yes`, `on`, `off` are booleans, `0755` is octal and
`1:30` is 90. Compose (Go, YAML 1.2) reads `restart: no` as the string "no"; so does this
loader: booleans are only true/false, integers decimal, 0x… or 0o…, and floats as YAML 1.2.

    services:
      web:
        command: !reset null        the key is removed from the merged result
        volumes: !override [a:/d]   replaces what earlier files said, unmerged

Everything else is PyYAML's safe loader: no Python objects, other tags refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]


@dataclass(frozen=True)
class Reset:
    """`!reset`: the key is removed from the merged result."""


@dataclass(frozen=True)
class Override:
    """`!override VALUE`: VALUE replaces what earlier files said, unmerged."""

    value: Any


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    pass


_CORE_SCALARS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_SCALARS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, _pattern, _first in (
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                  r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789.")):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern),
                                  list(_first))


def _int(loader: _Loader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))
    try:
        if text.startswith(("0x", "0o")):
            return int(text, 0)
        return int(text, 10)  # YAML 1.2: 0755 is 755
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text[:40]!r} is not an integer", node.start_mark) from None


def _bool(loader: _Loader, node: yaml.Node) -> bool:
    text = str(loader.construct_scalar(node)).lower()
    if text not in ("true", "false"):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text[:40]!r} is not true or false", node.start_mark)
    return text == "true"


def _reset(loader: _Loader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: _Loader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:bool", _bool)
_Loader.add_constructor("!reset", _reset)
_Loader.add_constructor("!override", _override)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` that also reads `!reset` and `!override`."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def strip(tree: Any) -> Any:
    """The tree with `!reset` keys and items dropped and `!override` values unwrapped."""
    if isinstance(tree, Override):
        return strip(tree.value)
    if isinstance(tree, dict):
        return {key: strip(value) for key, value in tree.items()
                if not isinstance(value, Reset)}
    if isinstance(tree, list):
        return [strip(value) for value in tree if not isinstance(value, Reset)]
    return tree
