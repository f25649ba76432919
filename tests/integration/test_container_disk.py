"""Container disks (`--disk SIZE`, issue #15, agent/disks.py): the container's writable layer
lives in its own loop-mounted ext4 of that size. `df /` inside shows it, writing past it fails
with ENOSPC inside that instance only, the data survives stop/start, and neither a delete nor a
failed launch leaves a file, a mount or a loop device behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard, leaks

MiB = 1024 * 1024
SIZE = 256 * MiB
BAD_IMAGE = "dockyard/disk-badcmd:test"  # created fine, fails at start


def _layer_dir(container_id: str) -> Path:
    client = docker.from_env()
    try:
        upper = client.api.inspect_container(container_id)["GraphDriver"]["Data"]["UpperDir"]
    finally:
        client.close()
    return Path(upper).parent


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _loops_on(path: Path) -> str:
    return subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True).stdout


def _df_root(dy: Dockyard, name: str) -> tuple[int, int]:
    """(size, available) of / inside the instance, in bytes."""
    line = dy.ok("exec", name, "--", "df", "-k", "/").out.strip().splitlines()[-1].split()
    return int(line[1]) * 1024, int(line[3]) * 1024


@pytest.fixture(scope="module")
def sized(dy: Dockyard) -> Iterator[dict[str, Any]]:
    inst = dy.ok("launch", IMAGE, "sized", "--disk", "256M", "--no-lxcfs", "--json").json()
    try:
        yield inst
    finally:
        dy.cli("delete", "sized", "--force")


def test_df_inside_shows_the_disk_size(dy: Dockyard, sized: dict[str, Any]) -> None:
    size, _ = _df_root(dy, "sized")
    # the file is grown by ext4's own metadata, so the room for files is the size asked for
    assert 0.995 * SIZE <= size <= 1.005 * SIZE, size
    layer = _layer_dir(dy.ok("show", "sized", "--json").json()["container_id"])
    assert f" {layer} " in _mounts()


def test_writing_past_the_disk_is_enospc_inside_only(dy: Dockyard,
                                                     sized: dict[str, Any]) -> None:
    # bounded a little past the size: without a sized disk it must not fill the host's
    proc = dy.cli("exec", "sized", "--", "dd", "if=/dev/zero", "of=/fill", "bs=1M",
                  f"count={SIZE // MiB + 16}")
    assert proc.code != 0
    assert "No space left on device" in proc.err + proc.out
    written = int(dy.ok("exec", "sized", "--", "stat", "-c", "%s", "/fill").out.strip())
    # ext4 keeps min(2 %, 16M) of the room back for its own allocations
    assert 0.95 * SIZE <= written <= SIZE, written
    _, available = _df_root(dy, "sized")
    assert available < MiB
    # the host's and the other instances' disk are untouched: a container without --disk writes
    dy.ok("launch", IMAGE, "unsized", "--no-lxcfs")
    try:
        dy.ok("exec", "unsized", "--", "dd", "if=/dev/zero", "of=/ten", "bs=1M", "count=10")
    finally:
        dy.ok("delete", "unsized", "--force")
    dy.ok("exec", "sized", "--", "rm", "/fill")


def test_the_disk_keeps_its_data_over_stop_and_start(dy: Dockyard,
                                                     sized: dict[str, Any]) -> None:
    dy.ok("exec", "sized", "--", "sh", "-c", "echo kept > /mark")
    dy.ok("stop", "sized")
    dy.ok("start", "sized")
    assert dy.ok("exec", "sized", "--", "cat", "/mark").out.strip() == "kept"
    assert _df_root(dy, "sized")[0] <= 1.005 * SIZE


def test_delete_leaves_no_disk_mount_or_loop(dy: Dockyard, sized: dict[str, Any]) -> None:
    shown = dy.ok("show", "sized", "--json").json()
    layer = _layer_dir(shown["container_id"])
    disks = dy.home / "agent" / "disks" / shown["id"]
    images = list(disks.glob("*.ext4"))
    assert len(images) == 1 and _loops_on(images[0])
    dy.ok("delete", "sized", "--force")
    assert not disks.exists()
    assert f" {layer} " not in _mounts()
    assert _loops_on(images[0]) == ""
    assert not layer.exists()  # Docker removed the layer: nothing held it
    assert leaks(dy) == []


@pytest.fixture
def bad_image() -> Iterator[str]:
    client = docker.from_env()
    try:
        client.images.get(IMAGE).tag(BAD_IMAGE)
        # the same image with a command that does not exist: docker create works, start fails
        container = client.containers.create(IMAGE, command=["true"])
        container.commit(repository=BAD_IMAGE.split(":")[0], tag=BAD_IMAGE.split(":")[1],
                         conf={"Cmd": ["/no/such/program"]})
        container.remove()
        yield BAD_IMAGE
    finally:
        client.images.remove(BAD_IMAGE, force=True)
        client.close()


def test_a_failed_launch_leaves_no_disk(dy: Dockyard, bad_image: str) -> None:
    before_loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    proc = dy.cli("launch", bad_image, "doomed", "--disk", "64M", "--no-lxcfs")
    assert proc.code != 0
    assert "no/such/program" in proc.err + proc.out
    assert dy.cli("show", "doomed").code != 0
    disks = dy.home / "agent" / "disks"
    assert not disks.exists() or list(disks.iterdir()) == []
    assert subprocess.run(["losetup", "-a"], capture_output=True,
                          text=True).stdout == before_loops
    assert "/disks/" not in _mounts()
    assert leaks(dy) == []
