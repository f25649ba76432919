"""Disk IO throttles (write) and usage (read) of a process's cgroups, v1 and v2.

Throttles are written straight to the cgroup files, because `docker update` cannot change
them on a running container. The agent re-applies them after every start, so they hold
across restarts (level-triggered: read back, compare, write only what differs).

=========== =============================================== ==================================
what        v1 (blkio controller)                          v2 (io controller)
=========== =============================================== ==================================
read bps    blkio.throttle.read_bps_device  "MAJ:MIN N"      io.max "MAJ:MIN rbps=N …"
write bps   blkio.throttle.write_bps_device                  wbps=N
read iops   blkio.throttle.read_iops_device                  riops=N
write iops  blkio.throttle.write_iops_device                 wiops=N
=========== =============================================== ==================================
v1 removes a throttle by writing 0; v2 by writing `max`. None here means "no limit".

Usage: memory rss and page cache separately (memory.usage_in_bytes counts page cache, which
is why "used" alone misleads), the limit, OOM kills, pids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dockyard.adapters.cgroups import (
    PROC,
    ROOT,
    process_cgroups,
    read_number,
    read_text,
    write_text,
)
from dockyard.errors import BackendError

IO_KEYS = ("read_bps", "write_bps", "read_iops", "write_iops")
_V1_FILES = {"read_bps": "blkio.throttle.read_bps_device",
             "write_bps": "blkio.throttle.write_bps_device",
             "read_iops": "blkio.throttle.read_iops_device",
             "write_iops": "blkio.throttle.write_iops_device"}
_V2_KEYS = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops",
            "write_iops": "wiops"}


@dataclass(frozen=True)
class IoLimits:
    read_bps: int | None = None
    write_bps: int | None = None
    read_iops: int | None = None
    write_iops: int | None = None


@dataclass(frozen=True)
class Usage:
    memory_rss: int | None
    memory_cache: int | None
    memory_usage: int | None
    memory_limit: int | None
    memory_failcnt: int | None
    oom_kills: int | None
    pids_current: int | None
    pids_max: int | None


def _blkio(pid: int, root: str, proc: str) -> tuple[int, str]:
    """(cgroup version, the directory of the process's blkio (v1) or io (v2) files)."""
    cgroups = process_cgroups(pid, root, proc)
    directory = cgroups.directory("blkio")
    if directory is None:
        raise BackendError(f"process {pid} has no blkio cgroup")
    return cgroups.version, directory


def parse_v1_device_file(text: str, device: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == device:
            return int(parts[1]) or None
    return None


def parse_v2_io_max(text: str, device: str) -> IoLimits:
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == device:
            values = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            return IoLimits(**{key: None if values.get(v2, "max") == "max"
                               else int(values[v2]) for key, v2 in _V2_KEYS.items()})
    return IoLimits()


def read_io(pid: int, device: str, root: str = ROOT, proc: str = PROC) -> IoLimits:
    """The throttles on `device` ("MAJ:MIN") of the process's cgroup."""
    version, directory = _blkio(pid, root, proc)
    if version == 2:
        return parse_v2_io_max(read_text(os.path.join(directory, "io.max")) or "", device)
    return IoLimits(**{key: parse_v1_device_file(read_text(os.path.join(directory, name)) or "",
                                                 device) for key, name in _V1_FILES.items()})


def write_io(pid: int, device: str, limits: IoLimits, root: str = ROOT,
             proc: str = PROC) -> None:
    """Set every throttle on `device` to `limits` (None removes it)."""
    version, directory = _blkio(pid, root, proc)
    if version == 2:
        fields = " ".join(f"{v2}={getattr(limits, key) or 'max'}"
                          for key, v2 in _V2_KEYS.items())
        write_text(os.path.join(directory, "io.max"), f"{device} {fields}")
        return
    for key, name in _V1_FILES.items():
        write_text(os.path.join(directory, name), f"{device} {getattr(limits, key) or 0}")


def _stat(path: str) -> dict[str, int]:
    text = read_text(path) or ""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_usage(pid: int, root: str = ROOT, proc: str = PROC) -> Usage:
    cgroups = process_cgroups(pid, root, proc)
    if cgroups.version == 2:
        return _usage_v2(cgroups.unified)
    memory = cgroups.directory("memory")
    pids = cgroups.directory("pids")
    stat = _stat(os.path.join(memory, "memory.stat")) if memory else {}
    oom = _stat(os.path.join(memory, "memory.oom_control")) if memory else {}
    return Usage(memory_rss=stat.get("total_rss", stat.get("rss")),
                 memory_cache=stat.get("total_cache", stat.get("cache")),
                 memory_usage=read_number(memory, "memory.usage_in_bytes"),
                 memory_limit=read_number(memory, "memory.limit_in_bytes"),
                 memory_failcnt=read_number(memory, "memory.failcnt"),
                 oom_kills=oom.get("oom_kill"),
                 pids_current=read_number(pids, "pids.current"),
                 pids_max=read_number(pids, "pids.max"))


def _usage_v2(directory: str) -> Usage:
    stat = _stat(os.path.join(directory, "memory.stat"))
    events = _stat(os.path.join(directory, "memory.events"))
    return Usage(memory_rss=stat.get("anon"), memory_cache=stat.get("file"),
                 memory_usage=read_number(directory, "memory.current"),
                 memory_limit=read_number(directory, "memory.max"),
                 memory_failcnt=events.get("max"), oom_kills=events.get("oom_kill"),
                 pids_current=read_number(directory, "pids.current"),
                 pids_max=read_number(directory, "pids.max"))
