"""The tests' observer of what Docker applied: the cgroup limits of a process, v1 and v2.

Test support, not production code (the agent never reads limits back this way; issue 17
item 6): built on the adapter's public `dockyard.adapters.cgroups`.

=============== ============================== ==========================================
field           v1 file                        v2 file
=============== ============================== ==========================================
cpuset          cpuset.cpus                    cpuset.cpus, else cpuset.cpus.effective
memory_limit    memory.limit_in_bytes          memory.max
pids_max        pids.max                       pids.max
pids_current    pids.current                   pids.current
cpu_shares      cpu.shares                     cpu.weight, converted to shares (below)
cfs_quota_us    cpu.cfs_quota_us               cpu.max (first field)
cfs_period_us   cpu.cfs_period_us              cpu.max (second field)
=============== ============================== ==========================================

* None means "unlimited" or "this controller is not there" (see `cgroups.parse_number`).
* v2 `cpu.weight` (1..10000) is converted with the inverse of runc's shares->weight formula,
  ``shares = 2 + (weight - 1) * 262142 // 9999``; runc's mapping is lossy, so docker's
  `--cpu-shares 1024` reads back as 998 (weight 39). Compare with that conversion in mind.
* v2 `cpuset.cpus` is empty when the cgroup inherits its parent's CPUs; then the effective set
  is reported ("" if the cpuset controller is not enabled there). On v1 `cpuset.cpus` is
  always filled in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dockyard.adapters.cgroups import (
    PROC,
    ROOT,
    ProcessCgroups,
    parse_number,
    process_cgroups,
    read_number,
    read_text,
)
from dockyard.errors import BackendError


@dataclass(frozen=True)
class CgroupLimits:
    """Limits of one process's cgroups; see the module docstring for None and units."""

    cpuset: str
    memory_limit: int | None
    pids_max: int | None
    pids_current: int | None
    cpu_shares: int | None
    cfs_quota_us: int | None
    cfs_period_us: int | None


def read_limits(pid: int, root: str = ROOT, proc: str = PROC) -> CgroupLimits:
    """The limits that apply to process `pid`; BackendError if it is gone or unreadable."""
    cgroups = process_cgroups(pid, root, proc)
    if cgroups.version == 2:
        return _read_v2(cgroups.unified)
    return _read_v1(cgroups)


def weight_to_shares(weight: int) -> int:
    """Inverse of runc's cgroup v1 shares -> v2 weight mapping (lossy, see module doc)."""
    return 2 + (weight - 1) * 262142 // 9999


def _read_v1(cgroups: ProcessCgroups) -> CgroupLimits:
    cpuset_dir = cgroups.directory("cpuset")
    memory_dir = cgroups.directory("memory")
    pids_dir = cgroups.directory("pids")
    cpu_dir = cgroups.directory("cpu")
    cpuset = read_text(os.path.join(cpuset_dir, "cpuset.cpus")) if cpuset_dir else None
    return CgroupLimits(
        cpuset=cpuset or "",
        memory_limit=read_number(memory_dir, "memory.limit_in_bytes"),
        pids_max=read_number(pids_dir, "pids.max"),
        pids_current=read_number(pids_dir, "pids.current"),
        cpu_shares=read_number(cpu_dir, "cpu.shares"),
        cfs_quota_us=read_number(cpu_dir, "cpu.cfs_quota_us"),
        cfs_period_us=read_number(cpu_dir, "cpu.cfs_period_us"),
    )


def _cpu_max(directory: str) -> tuple[int | None, int | None]:
    """(quota, period) from cpu.max ("max 100000" or "50000 100000"); Nones if absent."""
    path = os.path.join(directory, "cpu.max")
    text = read_text(path)
    if text is None:
        return None, None
    fields = text.split()
    if len(fields) != 2:
        raise BackendError(f"unexpected value {text!r} in {path}")
    return parse_number(fields[0], path), parse_number(fields[1], path)


def _read_v2(directory: str) -> CgroupLimits:
    if not os.path.isdir(directory):
        raise BackendError(f"cgroup {directory} does not exist (process gone?)")
    cpuset = read_text(os.path.join(directory, "cpuset.cpus")) or read_text(
        os.path.join(directory, "cpuset.cpus.effective")) or ""
    weight = read_number(directory, "cpu.weight")
    quota, period = _cpu_max(directory)
    return CgroupLimits(
        cpuset=cpuset,
        memory_limit=read_number(directory, "memory.max"),
        pids_max=read_number(directory, "pids.max"),
        pids_current=read_number(directory, "pids.current"),
        cpu_shares=weight_to_shares(weight) if weight is not None else None,
        cfs_quota_us=quota,
        cfs_period_us=period,
    )
