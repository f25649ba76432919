"""The machine image's cached debootstrap tree is keyed by what debootstrap is asked for: a
changed package list (or suite, mirror, variant) makes a new tree and drops the older ones; the
same request reuses the tree. debootstrap and tar are replaced at the module's command seam
(`_run`) by a fake that makes the files they would make."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.adapters import machine_image


def test_the_key_follows_the_request_and_not_the_package_order() -> None:
    key = machine_image.base_key()
    assert machine_image.base_key(packages=tuple(reversed(machine_image.PACKAGES))) == key
    others = {machine_image.base_key(packages=(*machine_image.PACKAGES, "curl")),
              machine_image.base_key(suite="trixie"),
              machine_image.base_key(mirror="http://mirror.invalid/debian"),
              machine_image.base_key(variant="buildd")}
    assert key not in others and len(others) == 4


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    ran: list[list[str]] = []

    def fake_run(command: list[str], progress: object) -> None:
        ran.append(command)
        if command[0] == "debootstrap":
            Path(command[-2]).mkdir(parents=True)
        elif command[0] == "tar":
            Path(command[command.index("-cf") + 1]).write_bytes(b"tree")
        elif command[:2] == ["rm", "-rf"]:
            Path(command[-1]).rmdir()

    monkeypatch.setattr(machine_image, "_run", fake_run)
    return ran


def test_a_new_key_builds_a_tree_and_removes_the_older_ones(tmp_path: Path,
                                                             commands: list[list[str]]) -> None:
    old_unkeyed = tmp_path / f"{machine_image.SUITE}-rootfs.tar"
    old_keyed = tmp_path / f"{machine_image.SUITE}-0123456789ab-rootfs.tar"
    for stale in (old_unkeyed, old_keyed):
        stale.write_bytes(b"old tree")

    tarball = machine_image._base_rootfs(tmp_path, lambda _line: None)
    assert tarball.name == f"{machine_image.SUITE}-{machine_image.base_key()}-rootfs.tar"
    assert tarball.read_bytes() == b"tree"
    assert [c[0] for c in commands if c[0] in ("debootstrap", "tar")] == ["debootstrap", "tar"]
    assert not old_unkeyed.exists() and not old_keyed.exists()

    commands.clear()
    assert machine_image._base_rootfs(tmp_path, lambda _line: None) == tarball
    assert commands == []  # the same request: the cached tree, no debootstrap
