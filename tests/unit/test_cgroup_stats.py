"""Stats readers against v1- and v2-shaped fake cgroup trees, /sys/class/net and /proc."""

from __future__ import annotations

import shutil
from pathlib import Path

from dockyard.adapters.cgroup_stats import (
    parse_flat,
    parse_loadavg,
    parse_meminfo,
    parse_proc_stat_busy,
    parse_v1_blkio,
    parse_v2_io_stat,
    read_counters,
    read_host,
    read_net,
    resolve,
)
from tests.unit.fake_trees import write_tree

PID = 4242
CID = "/docker/abc"


V1_BLKIO_BYTES = ("8:0 Read 4096\n8:0 Write 1048576\n8:0 Sync 0\n8:0 Async 0\n"
                  "8:16 Read 100\n8:16 Write 0\n8:0 Total 1052672\nTotal 1052772\n")


def v1(tmp_path: Path) -> tuple[str, str]:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    write_tree(proc, {f"{PID}/cgroup": "".join(f"{n}:{c}:{CID}\n" for n, c in enumerate(
        ["cpu", "cpuacct", "memory", "blkio", "pids", "name=systemd"], 1)) + f"0::{CID}\n"})
    write_tree(root, {
        f"cpuacct{CID}/cpuacct.usage": "2500000000\n",
        f"cpu{CID}/cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 150000000\n",
        f"memory{CID}/memory.stat": "cache 1\nrss 2\nhierarchical_memory_limit 67108864\n"
                                    "total_cache 104857600\ntotal_rss 1048576\n"
                                    "total_swap 0\n",
        f"memory{CID}/memory.failcnt": "7\n",
        f"memory{CID}/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        f"blkio{CID}/blkio.throttle.io_service_bytes_recursive": V1_BLKIO_BYTES,
        f"blkio{CID}/blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 256\n"
                                                           "Total 257\n",
        f"pids{CID}/pids.current": "3\n", f"pids{CID}/pids.max": "max\n",
    })
    return str(root), str(proc)


def v2(tmp_path: Path) -> tuple[str, str]:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    write_tree(proc, {f"{PID}/cgroup": f"0::{CID}\n"})
    write_tree(root, {
        "cgroup.controllers": "cpuset cpu io memory pids",
        f"{CID[1:]}/cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
                               "nr_periods 10\nnr_throttled 3\nthrottled_usec 150000\n",
        f"{CID[1:]}/memory.stat": "anon 1048576\nfile 104857600\n",
        f"{CID[1:]}/memory.swap.current": "4096\n",
        f"{CID[1:]}/memory.max": "67108864\n",
        f"{CID[1:]}/memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
        f"{CID[1:]}/io.stat": "8:0 rbytes=4096 wbytes=1048576 rios=1 wios=256 dbytes=0 dios=0\n"
                              "8:16 rbytes=100 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n",
        f"{CID[1:]}/pids.current": "3\n", f"{CID[1:]}/pids.max": "max\n",
    })
    return str(root), str(proc)


def test_parsers() -> None:
    assert parse_flat("a 1\nb -2\nbad\nc x\n") == {"a": 1, "b": -2}
    assert parse_v1_blkio(V1_BLKIO_BYTES) == (4196, 1048576)
    assert parse_v1_blkio("Total 0\n") == (0, 0)
    assert parse_v2_io_stat("8:0 rbytes=1 wbytes=2 rios=3 wios=4\n8:1 rbytes=10\n") == \
        (11, 2, 3, 4)
    assert parse_loadavg("0.50 1.00 2.25 4/334 10103\n") == (0.5, 1.0, 2.25)
    assert parse_meminfo("MemTotal: 100 kB\nMemFree: 1 kB\nMemAvailable: 50 kB\n") == \
        (102400, 51200)
    assert parse_proc_stat_busy("cpu  100 0 50 1000 20 5 5 0 0 0\ncpu0 1\n", 100) == 1.6


def test_v1_counters(tmp_path: Path) -> None:
    root, proc = v1(tmp_path)
    paths = resolve(PID, root, proc)
    assert paths.version == 1 and paths.memory == f"{root}/memory{CID}"
    c = read_counters(paths)
    assert c is not None
    assert c.cpu_seconds == 2.5 and c.cpu_throttled_seconds == 0.15
    assert c.cpu_throttled_periods == 3
    assert (c.memory_rss, c.memory_cache, c.memory_swap) == (1048576, 104857600, 0)
    assert (c.memory_limit, c.memory_failcnt, c.oom_kills) == (67108864, 7, 2)
    assert (c.read_bytes, c.write_bytes, c.read_ops, c.write_ops) == (4196, 1048576, 1, 256)
    assert (c.pids_current, c.pids_max) == (3, None)


def test_v2_counters(tmp_path: Path) -> None:
    root, proc = v2(tmp_path)
    paths = resolve(PID, root, proc)
    assert paths.version == 2
    c = read_counters(paths)
    assert c is not None
    assert c.cpu_seconds == 2.5 and c.cpu_throttled_seconds == 0.15
    assert (c.memory_rss, c.memory_cache, c.memory_swap) == (1048576, 104857600, 4096)
    assert (c.memory_limit, c.memory_failcnt, c.oom_kills) == (67108864, 7, 2)
    assert (c.read_bytes, c.write_bytes, c.read_ops, c.write_ops) == (4196, 1048576, 1, 256)
    assert (c.pids_current, c.pids_max) == (3, None)


def test_unlimited_v1_memory_is_none(tmp_path: Path) -> None:
    root, proc = v1(tmp_path)
    Path(root, f"memory{CID}/memory.stat").write_text(
        "total_rss 1\ntotal_cache 2\nhierarchical_memory_limit 9223372036854771712\n")
    c = read_counters(resolve(PID, root, proc))
    assert c is not None and c.memory_limit is None


def test_gone_cgroup_reads_as_none(tmp_path: Path) -> None:
    for make in (v1, v2):
        root, proc = make(tmp_path / make.__name__)
        paths = resolve(PID, root, proc)
        shutil.rmtree(root)
        assert read_counters(paths) is None


def test_net_is_seen_from_inside(tmp_path: Path) -> None:
    stats = tmp_path / "net" / "dyh0123456789ab" / "statistics"
    write_tree(stats, {"rx_bytes": "100\n", "tx_bytes": "200\n", "rx_packets": "1\n",
                 "tx_packets": "2\n"})
    net = read_net("0123456789ab", str(tmp_path / "net"))
    assert net is not None
    assert (net.rx_bytes, net.tx_bytes, net.rx_packets, net.tx_packets) == (200, 100, 2, 1)
    assert read_net("ffffffffffff", str(tmp_path / "net")) is None


def test_host(tmp_path: Path) -> None:
    write_tree(tmp_path, {"loadavg": "1.5 1.0 0.5 1/2 3\n",
                    "meminfo": "MemTotal: 1000 kB\nMemAvailable: 600 kB\n",
                    "stat": "cpu  100 0 100 5000 0 0 0 0 0 0\n"})
    host = read_host(str(tmp_path))
    assert (host.load1, host.load5, host.load15) == (1.5, 1.0, 0.5)
    assert (host.memory_total, host.memory_available) == (1024000, 614400)
    assert host.cpu_seconds > 0
