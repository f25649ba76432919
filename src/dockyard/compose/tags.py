"""YAML with Compose's merge tags: `!reset` and `!override` (the spec's merge rules).

    services:
      web:
        command: !reset null        the key is removed from the merged result
        volumes: !override [a:/d]   replaces what earlier files said, unmerged

Everything else is PyYAML's safe loader: no Python objects, other tags refused.
"""

from __future__ import annotations

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


def _reset(loader: _Loader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: _Loader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


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
