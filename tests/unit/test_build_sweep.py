"""The agent's start removes what builds of a killed agent left (agent/build.py `sweep`): each
`build-*` checkout under HOME/builds goes, and the local tag its build made is untagged (an
image in use keeps it); nothing else in the engine or the directory is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from dockyard.adapters.docker_engine import DockerEngine
from dockyard.agent.build import Builder
from dockyard.errors import Conflict


class FakeEngine:
    """Records the tags removed; refuses one as Docker does for an image in use."""

    def __init__(self) -> None:
        self.untagged: list[str] = []

    def remove_image(self, ref: str, untag_only: bool = False) -> None:
        assert untag_only
        if ref.endswith(":busy"):
            raise Conflict(f"image {ref} is in use")
        self.untagged.append(ref)


def test_sweep_removes_leftover_checkouts_and_their_tags(tmp_path: Path) -> None:
    root = tmp_path / "builds"
    for name, tag in (("build-a1-x", "reg:5000/default/app:abc"), ("build-b2-y", None),
                      ("build-c3-z", "reg:5000/default/app:busy")):
        (root / name / "src").mkdir(parents=True)
        (root / name / "src" / "Dockerfile").write_text("FROM scratch\n")
        if tag:
            (root / name / "tag").write_text(tag + "\n")
    (root / "notes.txt").write_text("not a build's")
    engine = FakeEngine()
    builder = Builder(cast(DockerEngine, engine), "reg:5000", root)
    assert builder.sweep() == ["build-a1-x", "build-b2-y", "build-c3-z"]
    assert engine.untagged == ["reg:5000/default/app:abc"]
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    assert builder.sweep() == []  # nothing left: nothing done


def test_sweep_of_a_missing_root_is_nothing(tmp_path: Path) -> None:
    engine: Any = FakeEngine()
    assert Builder(engine, "reg:5000", tmp_path / "none").sweep() == []
