"""Disk IO writers and usage readers against v1- and v2-shaped fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

from dockyard.adapters.cgroup_io import (
    IoLimits,
    parse_v1_device_file,
    parse_v2_io_max,
    read_io,
    read_usage,
    write_io,
)
from tests.unit.fake_trees import write_tree

PID = 4242
DEV = "254:0"


def v1(tmp_path: Path) -> tuple[str, str]:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    write_tree(proc, {f"{PID}/cgroup": "10:blkio:/d/x\n8:memory:/d/x\n7:pids:/d/x\n"})
    write_tree(root, {
        "blkio/d/x/blkio.throttle.read_bps_device": "",
        "blkio/d/x/blkio.throttle.write_bps_device": f"{DEV} 5242880\n8:0 99\n",
        "blkio/d/x/blkio.throttle.read_iops_device": "",
        "blkio/d/x/blkio.throttle.write_iops_device": "",
        "memory/d/x/memory.stat": "cache 100\nrss 200\ntotal_cache 1000\ntotal_rss 2000\n",
        "memory/d/x/memory.usage_in_bytes": "3100",
        "memory/d/x/memory.limit_in_bytes": "67108864",
        "memory/d/x/memory.failcnt": "7",
        "memory/d/x/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "pids/d/x/pids.current": "3", "pids/d/x/pids.max": "64",
    })
    return str(root), str(proc)


def v2(tmp_path: Path) -> tuple[str, str]:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    write_tree(proc, {f"{PID}/cgroup": "0::/d/x\n"})
    write_tree(root, {
        "cgroup.controllers": "cpuset cpu io memory pids",
        "d/x/io.max": f"{DEV} rbps=max wbps=1048576 riops=max wiops=50\n",
        "d/x/memory.stat": "anon 4096\nfile 8192\n",
        "d/x/memory.current": "12288", "d/x/memory.max": "max",
        "d/x/memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        "d/x/pids.current": "5", "d/x/pids.max": "max",
    })
    return str(root), str(proc)


def test_parsers() -> None:
    assert parse_v1_device_file(f"{DEV} 100\n8:0 5\n", DEV) == 100
    assert parse_v1_device_file("8:0 5\n", DEV) is None
    assert parse_v2_io_max(f"{DEV} rbps=10 wbps=max riops=max wiops=3", DEV) == \
        IoLimits(read_bps=10, write_iops=3)
    assert parse_v2_io_max("", DEV) == IoLimits()


def test_v1_read_and_write(tmp_path: Path) -> None:
    root, proc = v1(tmp_path)
    assert read_io(PID, DEV, root, proc) == IoLimits(write_bps=5242880)
    write_io(PID, DEV, IoLimits(read_bps=1000, write_iops=20), root, proc)
    base = Path(root) / "blkio/d/x"
    assert (base / "blkio.throttle.read_bps_device").read_text() == f"{DEV} 1000"
    assert (base / "blkio.throttle.write_bps_device").read_text() == f"{DEV} 0"  # removed
    assert (base / "blkio.throttle.write_iops_device").read_text() == f"{DEV} 20"


def test_v2_read_and_write(tmp_path: Path) -> None:
    root, proc = v2(tmp_path)
    assert read_io(PID, DEV, root, proc) == IoLimits(write_bps=1048576, write_iops=50)
    write_io(PID, DEV, IoLimits(read_iops=9), root, proc)
    assert (Path(root) / "d/x/io.max").read_text() == \
        f"{DEV} rbps=max wbps=max riops=9 wiops=max"


def test_usage_v1_separates_rss_and_cache(tmp_path: Path) -> None:
    root, proc = v1(tmp_path)
    use = read_usage(PID, root, proc)
    assert (use.memory_rss, use.memory_cache, use.memory_usage) == (2000, 1000, 3100)
    assert (use.memory_limit, use.memory_failcnt, use.oom_kills) == (67108864, 7, 2)
    assert (use.pids_current, use.pids_max) == (3, 64)


def test_usage_v2(tmp_path: Path) -> None:
    root, proc = v2(tmp_path)
    use = read_usage(PID, root, proc)
    assert (use.memory_rss, use.memory_cache, use.memory_usage) == (4096, 8192, 12288)
    assert (use.memory_limit, use.oom_kills, use.pids_current, use.pids_max) == \
        (None, 1, 5, None)
