"""Adapters own their internals (issue 17 item 5): no module of adapters/, agent/ or
devcluster/ imports another module's private names, and the docker SDK's private helpers are
used in adapters/docker_sdk.py only."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "dockyard"
PRIVATE_SDK = {"_url", "_post", "_post_json", "_get", "_delete", "_raise_for_status",
               "_result", "_fp", "_sock", "_stream_helper"}


def sources(folders: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts
                  and (not folders or p.relative_to(SRC).parts[0] in folders))


def test_no_module_imports_a_private_name_of_another_dockyard_module() -> None:
    found = []
    for path in sources(("adapters", "agent", "devcluster")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dockyard"):
                found += [f"{path.relative_to(SRC)}: {node.module}.{alias.name}"
                          for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []


def test_private_docker_sdk_helpers_only_in_docker_sdk() -> None:
    found = []
    for path in sources():
        if path.name == "docker_sdk.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_SDK and not (
                    isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}")
    assert found == []
