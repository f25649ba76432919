"""cgroups adapter against fake v1- and v2-shaped trees (plus one real-host read), through the
tests' limits observer (tests/cgroup_limits.py) and directly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.adapters.cgroups import cgroup_version, process_cgroups
from dockyard.errors import BackendError
from tests import cgroup_limits
from tests.cgroup_limits import CgroupLimits, read_limits
from tests.requirements import requires
from tests.unit.fake_trees import write_tree as fake_tree

PID = 4242
V1_UNLIMITED = "9223372036854771712"


def write_tree(base: Path, files: dict[str, str]) -> None:
    fake_tree(base, {rel: content + "\n" for rel, content in files.items()})


def fake_proc(tmp_path: Path, cgroup_lines: list[str]) -> str:
    proc = tmp_path / "proc"
    write_tree(proc, {f"{PID}/cgroup": "\n".join(cgroup_lines)})
    return str(proc)


V1_LINES = [
    "12:pids:/dockyard/abc",
    "9:name=systemd:/dockyard/abc",
    "8:memory:/dockyard/abc",
    "4:cpu,cpuacct:/dockyard/abc",
    "3:cpuset:/dockyard/abc",
]


def v1_tree(tmp_path: Path, cpu_mount: str = "cpu,cpuacct") -> str:
    root = tmp_path / "cgroup"
    write_tree(root, {
        "cpuset/dockyard/abc/cpuset.cpus": "2-3",
        "memory/dockyard/abc/memory.limit_in_bytes": str(512 * 2**20),
        "pids/dockyard/abc/pids.max": "100",
        "pids/dockyard/abc/pids.current": "7",
        f"{cpu_mount}/dockyard/abc/cpu.shares": "512",
        f"{cpu_mount}/dockyard/abc/cpu.cfs_quota_us": "50000",
        f"{cpu_mount}/dockyard/abc/cpu.cfs_period_us": "100000",
        "unified/cgroup.controllers": "",  # hybrid layout: still v1
    })
    return str(root)


def test_v1_limits_with_comounted_cpu(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path), fake_proc(tmp_path, V1_LINES)
    assert cgroup_version(root) == 1
    assert read_limits(PID, root=root, proc=proc) == CgroupLimits(
        cpuset="2-3", memory_limit=512 * 2**20, pids_max=100, pids_current=7,
        cpu_shares=512, cfs_quota_us=50000, cfs_period_us=100000)


def test_v1_separate_cpu_mount_and_unlimited_values(tmp_path: Path) -> None:
    root = v1_tree(tmp_path, cpu_mount="cpu")
    write_tree(Path(root), {
        "memory/dockyard/abc/memory.limit_in_bytes": V1_UNLIMITED,
        "pids/dockyard/abc/pids.max": "max",
        "cpu/dockyard/abc/cpu.cfs_quota_us": "-1",
    })
    limits = read_limits(PID, root=root, proc=fake_proc(tmp_path, V1_LINES))
    assert limits.memory_limit is None
    assert limits.pids_max is None
    assert limits.cfs_quota_us is None
    assert (limits.cpu_shares, limits.cfs_period_us) == (512, 100000)


def test_v1_missing_controller_reads_as_none(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    lines = [line for line in V1_LINES if ":pids:" not in line]
    limits = read_limits(PID, root=root, proc=fake_proc(tmp_path, lines))
    assert (limits.pids_max, limits.pids_current) == (None, None)


def v2_tree(tmp_path: Path, files: dict[str, str]) -> str:
    root = tmp_path / "cgroup2"
    write_tree(root, {"cgroup.controllers": "cpuset cpu io memory pids", **files})
    return str(root)


V2_LINES = ["0::/system.slice/docker-abc.scope"]
V2_DIR = "system.slice/docker-abc.scope"


def test_v2_limits(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {
        f"{V2_DIR}/cpuset.cpus": "1",
        f"{V2_DIR}/cpuset.cpus.effective": "1",
        f"{V2_DIR}/memory.max": str(2**30),
        f"{V2_DIR}/pids.max": "64",
        f"{V2_DIR}/pids.current": "3",
        f"{V2_DIR}/cpu.weight": "39",
        f"{V2_DIR}/cpu.max": "25000 100000",
    })
    assert cgroup_version(root) == 2
    assert read_limits(PID, root=root, proc=fake_proc(tmp_path, V2_LINES)) == CgroupLimits(
        cpuset="1", memory_limit=2**30, pids_max=64, pids_current=3,
        cpu_shares=998, cfs_quota_us=25000, cfs_period_us=100000)


def test_v2_unlimited_and_inherited_cpuset(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {
        f"{V2_DIR}/cpuset.cpus": "",
        f"{V2_DIR}/cpuset.cpus.effective": "0-7",
        f"{V2_DIR}/memory.max": "max",
        f"{V2_DIR}/pids.max": "max",
        f"{V2_DIR}/cpu.weight": "100",
        f"{V2_DIR}/cpu.max": "max 100000",
    })
    limits = read_limits(PID, root=root, proc=fake_proc(tmp_path, V2_LINES))
    assert limits.cpuset == "0-7"
    assert (limits.memory_limit, limits.pids_max, limits.pids_current) == (None, None, None)
    assert (limits.cfs_quota_us, limits.cfs_period_us) == (None, 100000)
    assert limits.cpu_shares == 2 + 99 * 262142 // 9999


def test_v2_root_cgroup_has_no_limits(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {"cpuset.cpus.effective": "0-3"})
    limits = read_limits(PID, root=root, proc=fake_proc(tmp_path, ["0::/"]))
    assert limits == CgroupLimits(cpuset="0-3", memory_limit=None, pids_max=None,
                                  pids_current=None, cpu_shares=None, cfs_quota_us=None,
                                  cfs_period_us=None)


@pytest.mark.parametrize(("weight", "shares"), [(1, 2), (39, 998), (100, 2597), (10000, 262144)])
def test_weight_to_shares(weight: int, shares: int) -> None:
    # runc maps shares -> weight as 1 + (shares - 2) * 9999 // 262142 (lossy: 1024 -> 39)
    assert cgroup_limits.weight_to_shares(weight) == shares


def test_gone_process_is_a_backend_error(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {})
    with pytest.raises(BackendError, match="gone"):
        read_limits(PID, root=root, proc=str(tmp_path / "empty-proc"))


def test_v2_cgroup_directory_gone(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {})
    with pytest.raises(BackendError, match="does not exist"):
        read_limits(PID, root=root, proc=fake_proc(tmp_path, V2_LINES))


def test_garbage_value_is_a_backend_error(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {f"{V2_DIR}/memory.max": "lots"})
    with pytest.raises(BackendError, match="lots"):
        read_limits(PID, root=root, proc=fake_proc(tmp_path, V2_LINES))


@requires(os.path.isdir("/sys/fs/cgroup"), "a cgroup mount", "a host with /sys/fs/cgroup")
def test_real_host_reads_own_process() -> None:
    limits = read_limits(os.getpid())
    assert cgroup_version() in (1, 2)
    assert limits.cpuset  # the machine's cpus at least
    assert limits.memory_limit is None or limits.memory_limit > 0


def test_process_cgroups_directories_v1(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    cgroups = process_cgroups(PID, root=root, proc=fake_proc(tmp_path, V1_LINES))
    assert cgroups.version == 1
    # cpu and cpuacct share the co-mounted hierarchy ROOT/cpu,cpuacct
    assert cgroups.directory("cpu") == cgroups.directory("cpuacct") == \
        os.path.join(root, "cpu,cpuacct", "dockyard", "abc")
    assert cgroups.directory("memory") == os.path.join(root, "memory", "dockyard", "abc")
    assert cgroups.directory("blkio") is None  # not joined
    with pytest.raises(BackendError, match="no cgroup v2 membership"):
        _ = cgroups.unified


def test_process_cgroups_directories_v2(tmp_path: Path) -> None:
    root = v2_tree(tmp_path, {f"{V2_DIR}/memory.max": "max"})
    cgroups = process_cgroups(PID, root=root, proc=fake_proc(tmp_path, V2_LINES))
    assert cgroups.version == 2
    assert {cgroups.directory(c) for c in ("cpu", "memory", "blkio", "pids")} == \
        {cgroups.unified} == {os.path.join(root, V2_DIR)}
