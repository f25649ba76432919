"""lxcfs against a real lxcfs and dockerd: the instance's own /proc views, and repair after an
lxcfs restart with the same PID.

Each test runs its own lxcfs (scripts/lxcfs.sh with a ROOT in a fresh tempdir, so a real
/var/lib/dockyard/lxcfs is never disturbed) and its own containers (`dytst-lxcfs-<hex>`,
network none). Teardown, even after a failure: containers removed, that lxcfs killed by the pid of
its pid file and its mount removed by the script, ROOT's bind mount detached, the tempdir
removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.adapters.docker_engine import ContainerSpec, DockerEngine
from dockyard.adapters.lxcfs import Lxcfs
from dockyard.agent.lxcfs_watch import LxcfsWatch
from tests.requirements import missing, requires, requires_root

pytestmark = [
    pytest.mark.integration,
    requires_root(),
    requires(shutil.which("lxcfs") is not None, "lxcfs", "scripts/setup.sh (apt package)"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lxcfs.sh"
IMAGE = "dockyard/busybox:latest"
MEMORY = 64 * 1024 * 1024
DEAD = "Transport endpoint is not connected"


def lxcfs_sh(verb: str, root: str, logdir: str, check: bool = True) -> None:
    env = {**os.environ, "DOCKYARD_LOGDIR": logdir}
    proc = subprocess.run([str(SCRIPT), verb, root], env=env, capture_output=True, text=True,
                          timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr


def kill_lxcfs(root: str) -> None:
    """SIGKILL this test's lxcfs by its pid file: a graceful stop waits ~5 s for lxcfs's
    loadavg thread (the script's own stop is tested in the restart test)."""
    try:
        pid = int(Path(root, "lxcfs.pid").read_text().split()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() == "lxcfs":
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:  # gone
            return
        time.sleep(0.05)


def mounted(path: str) -> bool:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == path for line in lines)


@pytest.fixture
def lxcfs() -> Iterator[Lxcfs]:
    tmp = tempfile.mkdtemp(prefix="dytst-lxcfs-")
    root, logdir = f"{tmp}/root", f"{tmp}/log"
    try:
        lxcfs_sh("start", root, logdir)
        yield Lxcfs(root)
    finally:
        kill_lxcfs(root)
        lxcfs_sh("stop", root, logdir, check=False)  # what the killed lxcfs left mounted
        while mounted(root):
            subprocess.run(["umount", "-l", root], check=False, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    eng = DockerEngine()
    if not eng.image_exists(IMAGE):
        eng.close()
        missing(IMAGE, "scripts/setup.sh (it builds the image)")
    yield eng
    eng.close()


@pytest.fixture
def launch(engine: DockerEngine, lxcfs: Lxcfs) -> Iterator[Callable[[], str]]:
    """Start a container with the lxcfs mounts, 64 MiB and cpuset 0; return its name."""
    names: list[str] = []

    def start() -> str:
        name = f"dytst-lxcfs-{secrets.token_hex(4)}"
        names.append(name)
        engine.create(ContainerSpec(
            name=name, image=IMAGE, hostname="lxcfs-test", labels={}, env={}, cpuset="0",
            pids_limit=64, memory=MEMORY, mounts=lxcfs.mounts(), restart_policy="no",
            stop_timeout=1))
        assert engine.start(name).running
        return name

    try:
        yield start
    finally:
        for name in names:
            engine.remove(name)


def run(engine: DockerEngine, name: str, *cmd: str) -> tuple[int, str]:
    result = engine.exec(name, list(cmd), {}, None, None)
    return result.exit_code, result.stdout + result.stderr


def read(engine: DockerEngine, name: str, path: str) -> str:
    code, out = run(engine, name, "cat", path)
    assert code == 0, out
    return out


def uptime(engine: DockerEngine, name: str) -> float:
    return float(read(engine, name, "/proc/uptime").split()[0])


def assert_views_are_the_instances(engine: DockerEngine, name: str) -> None:
    mountinfo = read(engine, name, "/proc/self/mountinfo")
    assert " /proc/meminfo " in mountinfo and "fuse.lxcfs" in mountinfo
    first = read(engine, name, "/proc/meminfo").splitlines()[0].split()
    assert first[0] == "MemTotal:" and int(first[1]) == MEMORY // 1024, first
    assert read(engine, name, "/sys/devices/system/cpu/online").strip() == "0"
    assert read(engine, name, "/proc/cpuinfo").count("processor") == 1
    before = uptime(engine, name)
    time.sleep(1.5)
    after = uptime(engine, name)
    assert before < 120, "the container's uptime, not the host's"
    assert 1.0 <= after - before < 10, (before, after)


def meminfo_binds(engine: DockerEngine, name: str) -> list[str]:
    """The mountinfo lines of /proc/meminfo inside the instance."""
    lines = read(engine, name, "/proc/self/mountinfo").splitlines()
    return [line for line in lines if line.split()[4] == "/proc/meminfo"]


def test_instance_sees_its_own_limits_through_lxcfs(
        lxcfs: Lxcfs, engine: DockerEngine, launch: Callable[[], str]) -> None:
    assert lxcfs.available() and lxcfs.generation() is not None
    name = launch()
    assert_views_are_the_instances(engine, name)


def test_views_come_back_after_lxcfs_restart_with_the_same_pid(
        lxcfs: Lxcfs, engine: DockerEngine, launch: Callable[[], str]) -> None:
    name = launch()
    info = engine.inspect(name)
    assert info is not None
    pid = info.pid
    watch = LxcfsWatch(lxcfs, lambda: [pid], interval=0.5)
    assert watch.check_once() == 1  # first check: rebind is a no-op on a current instance
    assert len(meminfo_binds(engine, name)) == 1
    generation = lxcfs.generation()

    root, logdir = str(lxcfs.root), str(lxcfs.root.parent / "log")
    lxcfs_sh("stop", root, logdir)
    assert not lxcfs.available() and watch.check_once() == 0
    lxcfs_sh("start", root, logdir)
    assert lxcfs.available() and lxcfs.generation() != generation
    code, out = run(engine, name, "cat", "/proc/meminfo")
    assert code != 0 and DEAD in out, out  # the old binds still point at the dead mount

    assert watch.check_once() == 1
    deadline = time.monotonic() + 10
    while run(engine, name, "cat", "/proc/meminfo")[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_views_are_the_instances(engine, name)
    assert watch.check_once() == 0
    lxcfs.rebind(pid)  # idempotent: no stacked binds
    binds = meminfo_binds(engine, name)
    assert len(binds) == 1 and binds[0].split()[5].startswith("ro,"), binds
    after = engine.inspect(name)
    assert after is not None and after.pid == pid and after.running
