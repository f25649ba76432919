"""Usage counters of one instance (its cgroups and its host-side veth) and of the host.

Cheap by design: the cgroup directories of a container are resolved once (from
/proc/PID/cgroup, `resolve`) and kept by the caller — they are named after the container id,
so they survive restarts of the same container. A pass then reads about a dozen small files
per instance and parses them with the pure functions below.

=================== ===================================== =====================================
value               v1 file                               v2 file
=================== ===================================== =====================================
cpu seconds         cpuacct.usage (ns)                    cpu.stat usage_usec
throttling          cpu.stat nr_throttled, throttled_time cpu.stat nr_throttled, throttled_usec
rss / cache / swap  memory.stat total_rss/total_cache/    memory.stat anon / file,
                    total_swap                            memory.swap.current
limit, failcnt      memory.limit_in_bytes, memory.failcnt memory.max, memory.events max
oom kills           memory.oom_control oom_kill           memory.events oom_kill
block IO            blkio.throttle.io_service_bytes_      io.stat rbytes wbytes rios wios
                    recursive, io_serviced_recursive
pids                pids.current, pids.max                pids.current, pids.max
network             /sys/class/net/dyh<id>/statistics/{rx,tx}_{bytes,packets}; the host end
                    receives what the instance transmits, so rx and tx are swapped
=================== ===================================== =====================================

On v1, buffered writes reach the disk from the kernel's flusher threads, which are charged to
the root blkio cgroup: an instance's write bytes count only direct and synchronous IO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dockyard.adapters.cgroups import PROC, ROOT, parse_number, process_cgroups
from dockyard.errors import BackendError
from dockyard.model.ids import host_veth_name

__all__ = ["CgroupPaths", "Counters", "HostCounters", "NetCounters", "parse_flat",
           "parse_v1_blkio", "parse_v2_io_stat", "read_counters", "read_host", "read_net",
           "resolve"]

_SYS_NET = "/sys/class/net"


@dataclass(frozen=True)
class CgroupPaths:
    """Where one container's counters live. On v2 every field is the same directory."""

    version: int
    cpu: str | None
    cpuacct: str | None
    memory: str | None
    blkio: str | None
    pids: str | None


@dataclass(frozen=True)
class Counters:
    cpu_seconds: float | None = None
    cpu_throttled_seconds: float | None = None
    cpu_throttled_periods: int | None = None
    memory_rss: int | None = None
    memory_cache: int | None = None
    memory_swap: int | None = None
    memory_limit: int | None = None
    memory_failcnt: int | None = None
    oom_kills: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_ops: int | None = None
    write_ops: int | None = None
    pids_current: int | None = None
    pids_max: int | None = None


@dataclass(frozen=True)
class NetCounters:
    """Seen from inside the instance (rx = what the instance received)."""

    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int


@dataclass(frozen=True)
class HostCounters:
    load1: float
    load5: float
    load15: float
    memory_total: int
    memory_available: int
    cpu_seconds: float


# --------------------------------------------------------------------------- parsing


def parse_flat(text: str) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, memory.events …) → {key: int}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_v1_blkio(text: str) -> tuple[int, int]:
    """(read, write) summed over devices from a v1 io_service_bytes / io_serviced file.

    Lines are `MAJ:MIN Read N`, `MAJ:MIN Write N`, … and a final `Total N`."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[2].isdigit():
            continue
        if parts[1] == "Read":
            read += int(parts[2])
        elif parts[1] == "Write":
            write += int(parts[2])
    return read, write


def parse_v2_io_stat(text: str) -> tuple[int, int, int, int]:
    """(rbytes, wbytes, rios, wios) summed over devices from a v2 io.stat file."""
    totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key in totals and value.isdigit():
                totals[key] += int(value)
    return totals["rbytes"], totals["wbytes"], totals["rios"], totals["wios"]


def parse_loadavg(text: str) -> tuple[float, float, float]:
    fields = text.split()
    if len(fields) < 3:
        raise BackendError(f"unexpected /proc/loadavg {text!r}")
    return float(fields[0]), float(fields[1]), float(fields[2])


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


def parse_proc_stat_busy(text: str, hz: int) -> float:
    """Busy CPU seconds of the machine (all but idle and iowait) from /proc/stat's cpu line."""
    first = text.split("\n", 1)[0].split()
    if not first or first[0] != "cpu":
        raise BackendError("unexpected /proc/stat")
    ticks = [int(v) for v in first[1:]]
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / hz


# --------------------------------------------------------------------------- reading


def _read(path: str | None) -> str | None:
    """Content of a small file, or None when it (or its directory) is gone."""
    if path is None:
        return None
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
        return None
    except OSError as exc:
        raise BackendError(f"reading {path}: {exc}") from exc


def _in(directory: str | None, name: str) -> str | None:
    return os.path.join(directory, name) if directory else None


def _value(directory: str | None, name: str) -> int | None:
    text = _read(_in(directory, name))
    return parse_number(text.strip() if text is not None else None, name)


def resolve(pid: int, root: str = ROOT, proc: str = PROC) -> CgroupPaths:
    """The cgroup directories of process `pid` (BackendError when it is gone)."""
    cgroups = process_cgroups(pid, root, proc)
    v = cgroups.directory
    return CgroupPaths(cgroups.version, v("cpu"), v("cpuacct"), v("memory"), v("blkio"),
                       v("pids"))


def read_counters(paths: CgroupPaths) -> Counters | None:
    """One pass over the container's cgroup files; None when its cgroup is gone (stopped)."""
    if paths.version == 2:
        return _counters_v2(paths)
    usage = _read(_in(paths.cpuacct, "cpuacct.usage"))
    memory_stat = _read(_in(paths.memory, "memory.stat"))
    if usage is None and memory_stat is None:
        return None
    cpu = parse_flat(_read(_in(paths.cpu, "cpu.stat")) or "")
    mem = parse_flat(memory_stat or "")
    oom = parse_flat(_read(_in(paths.memory, "memory.oom_control")) or "")
    rbytes, wbytes = parse_v1_blkio(
        _read(_in(paths.blkio, "blkio.throttle.io_service_bytes_recursive")) or "")
    rops, wops = parse_v1_blkio(
        _read(_in(paths.blkio, "blkio.throttle.io_serviced_recursive")) or "")
    throttled_ns = cpu.get("throttled_time")
    return Counters(
        cpu_seconds=int(usage) / 1e9 if usage and usage.strip().isdigit() else None,
        cpu_throttled_seconds=throttled_ns / 1e9 if throttled_ns is not None else None,
        cpu_throttled_periods=cpu.get("nr_throttled"),
        memory_rss=mem.get("total_rss", mem.get("rss")),
        memory_cache=mem.get("total_cache", mem.get("cache")),
        memory_swap=mem.get("total_swap", mem.get("swap")),
        memory_limit=parse_number(str(mem["hierarchical_memory_limit"]))
        if "hierarchical_memory_limit" in mem else _value(paths.memory, "memory.limit_in_bytes"),
        memory_failcnt=_value(paths.memory, "memory.failcnt"),
        oom_kills=oom.get("oom_kill"),
        read_bytes=rbytes, write_bytes=wbytes, read_ops=rops, write_ops=wops,
        pids_current=_value(paths.pids, "pids.current"),
        pids_max=_value(paths.pids, "pids.max"))


def _counters_v2(paths: CgroupPaths) -> Counters | None:
    directory = paths.memory
    cpu_text = _read(_in(directory, "cpu.stat"))
    if cpu_text is None:
        return None
    cpu = parse_flat(cpu_text)
    mem = parse_flat(_read(_in(directory, "memory.stat")) or "")
    events = parse_flat(_read(_in(directory, "memory.events")) or "")
    rbytes, wbytes, rops, wops = parse_v2_io_stat(_read(_in(directory, "io.stat")) or "")
    usage, throttled = cpu.get("usage_usec"), cpu.get("throttled_usec")
    return Counters(
        cpu_seconds=usage / 1e6 if usage is not None else None,
        cpu_throttled_seconds=throttled / 1e6 if throttled is not None else None,
        cpu_throttled_periods=cpu.get("nr_throttled"),
        memory_rss=mem.get("anon"), memory_cache=mem.get("file"),
        memory_swap=_value(directory, "memory.swap.current"),
        memory_limit=_value(directory, "memory.max"),
        memory_failcnt=events.get("max"), oom_kills=events.get("oom_kill"),
        read_bytes=rbytes, write_bytes=wbytes, read_ops=rops, write_ops=wops,
        pids_current=_value(directory, "pids.current"),
        pids_max=_value(directory, "pids.max"))


def read_net(instance_id: str, sys_net: str = _SYS_NET) -> NetCounters | None:
    """The instance's traffic from its host-side veth; None when the veth is not there."""
    stats = os.path.join(sys_net, host_veth_name(instance_id), "statistics")
    values = {}
    for name in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"):
        text = _read(os.path.join(stats, name))
        if text is None:
            return None
        values[name] = int(text)
    return NetCounters(rx_bytes=values["tx_bytes"], tx_bytes=values["rx_bytes"],
                       rx_packets=values["tx_packets"], tx_packets=values["rx_packets"])


def read_host(proc: str = PROC) -> HostCounters:
    """Load averages, memory and busy CPU seconds of the whole machine."""
    load = parse_loadavg(_read(os.path.join(proc, "loadavg")) or "")
    total, available = parse_meminfo(_read(os.path.join(proc, "meminfo")) or "")
    busy = parse_proc_stat_busy(_read(os.path.join(proc, "stat")) or "",
                                os.sysconf("SC_CLK_TCK"))
    return HostCounters(load1=load[0], load5=load[1], load15=load[2], memory_total=total,
                        memory_available=available, cpu_seconds=busy)
