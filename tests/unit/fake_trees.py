"""Fake file trees (cgroup hierarchies, /proc, /sys) for the adapters' file readers."""

from __future__ import annotations

from pathlib import Path


def write_tree(base: Path, files: dict[str, str]) -> None:
    """Write each `relative path: content` under `base`, making the directories."""
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
