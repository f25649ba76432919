"""A machine instance behaves like a small VM: its own view of /proc through lxcfs (free,
nproc, uptime, top), ssh with the key given at launch, and a view that survives an lxcfs
restart without restarting the instance."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard, pid_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssh") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def vm(dy: Dockyard, machine_image: str, key: Path) -> Iterator[dict[str, Any]]:
    inst = dy.ok("launch", "dockyard/machine:bookworm", "vm", "--cores", "1", "--memory",
                 "256M", "--ssh-key", f"{key}.pub", "--json").json()
    try:
        yield inst
    finally:
        dy.cli("delete", "vm", "--force")


def inside(dy: Dockyard, *cmd: str) -> str:
    return dy.ok("exec", "vm", "--", *cmd).out


def test_procps_sees_the_instance_limits(dy: Dockyard, vm: dict[str, Any]) -> None:
    assert "fuse.lxcfs" in inside(dy, "cat", "/proc/self/mountinfo")
    total = int(inside(dy, "free", "-m").splitlines()[1].split()[1])
    assert 250 <= total <= 262, total
    assert inside(dy, "nproc").strip() == "1"
    up1 = float(inside(dy, "cat", "/proc/uptime").split()[0])
    time.sleep(1.2)
    up2 = float(inside(dy, "cat", "/proc/uptime").split()[0])
    assert up1 < 600 and up2 > up1  # the instance's own uptime, and it grows
    top = inside(dy, "top", "-bn1")
    assert "MiB Mem :    256.0 total" in top or "256.0 total" in top, top[:400]


def test_ssh_root_with_the_launch_key(dy: Dockyard, vm: dict[str, Any], key: Path) -> None:
    cmd = ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
           "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
           f"root@{vm['ip']}", "hostname"]
    for _ in range(30):  # sshd comes up under supervisord a moment after start
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode == 0:
            break
        time.sleep(0.3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "vm"


def test_lxcfs_restart_is_repaired_without_restarting(dy: Dockyard, vm: dict[str, Any]) -> None:
    pid = pid_of(vm["container_id"])
    subprocess.run([str(ROOT / "scripts" / "lxcfs.sh"), "stop"], check=True,
                   capture_output=True)
    try:
        broken = dy.cli("exec", "vm", "--", "head", "-1", "/proc/meminfo")
        assert "not connected" in broken.err or broken.code != 0
    finally:
        subprocess.run([str(ROOT / "scripts" / "lxcfs.sh"), "start"], check=True,
                       capture_output=True)
    deadline = time.monotonic() + 10
    line = ""
    while time.monotonic() < deadline:
        line = dy.cli("exec", "vm", "--", "head", "-1", "/proc/meminfo").out
        if "262144 kB" in line:
            break
        time.sleep(0.3)
    assert "262144 kB" in line
    assert pid_of(vm["container_id"]) == pid


def test_no_lxcfs_gives_the_host_view(dy: Dockyard) -> None:
    dy.ok("launch", IMAGE, "hostview", "--no-lxcfs", "--memory", "64M")
    try:
        assert "fuse.lxcfs" not in dy.ok("exec", "hostview", "--", "cat",
                                         "/proc/self/mountinfo").out
        assert dy.ok("show", "hostview", "--json").json()["lxcfs"] is False
    finally:
        dy.cli("delete", "hostview", "--force")
