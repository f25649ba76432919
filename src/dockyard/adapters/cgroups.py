"""Read (never write) the cgroup limits that apply to a process, on cgroup v1 and v2.

The process's cgroups come from /proc/PID/cgroup, so any docker `--cgroup-parent` (or none)
works. The version is detected at run time: v2 when the cgroup root has `cgroup.controllers`
(a unified mount); otherwise v1, including the "hybrid" layout whose v2 tree sits at
`ROOT/unified` with all controllers still on v1.

Values and their meaning (same on both versions):

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

* None means "unlimited" ("max", -1, or v1's page-counter maximum, i.e. anything >= 2**62)
  or "this controller is not there" (file missing, e.g. the root cgroup has no pids.max).
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

from dockyard.errors import BackendError

__all__ = ["CgroupLimits", "cgroup_version", "read_limits", "weight_to_shares"]

_ROOT = "/sys/fs/cgroup"
_PROC = "/proc"
_V1_UNLIMITED = 2**62  # v1 reports no limit as PAGE_COUNTER_MAX * PAGE_SIZE (~2**63)


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


def cgroup_version(root: str = _ROOT) -> int:
    """2 when `root` is a unified (v2) mount, else 1 (v1 or hybrid)."""
    return 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1


def read_limits(pid: int, root: str = _ROOT, proc: str = _PROC) -> CgroupLimits:
    """The limits that apply to process `pid`; BackendError if it is gone or unreadable."""
    memberships = _memberships(pid, proc)
    if cgroup_version(root) == 2:
        if "" not in memberships:
            raise BackendError(f"process {pid} has no cgroup v2 membership in {proc}")
        return _read_v2(_join(root, memberships[""][1]))
    return _read_v1(root, memberships)


# --------------------------------------------------------------------------- parsing


def _memberships(pid: int, proc: str) -> dict[str, tuple[str, str]]:
    """controller -> (its hierarchy's controller list, cgroup path) from /proc/PID/cgroup.

    The v2 line "0::/path" is stored under the key "" (with an empty controller list).
    Named v1 hierarchies ("name=systemd") are kept under their name.
    """
    path = os.path.join(proc, str(pid), "cgroup")
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError as exc:
        raise BackendError(f"process {pid} is gone (no {path})") from exc
    except OSError as exc:
        raise BackendError(f"reading {path}: {exc}") from exc
    out: dict[str, tuple[str, str]] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, cgroup_path = parts
        for name in controllers.split(",") if controllers else [""]:
            out[name] = (controllers, cgroup_path)
    return out


def _join(root: str, *parts: str) -> str:
    return os.path.join(root, *(p.strip("/") for p in parts if p.strip("/")))


def _read(path: str) -> str | None:
    """File content stripped, or None when the file does not exist."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise BackendError(f"reading {path}: {exc}") from exc


def _number(text: str | None, path: str = "") -> int | None:
    """Integer value; None for missing, "max", negative, or v1's "unlimited" sentinel."""
    if text is None or text == "" or text == "max":
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise BackendError(f"unexpected value {text!r} in {path or 'a cgroup file'}") from exc
    if value < 0 or value >= _V1_UNLIMITED:
        return None
    return value


def _file_number(directory: str | None, name: str) -> int | None:
    if directory is None:
        return None
    path = os.path.join(directory, name)
    return _number(_read(path), path)


# --------------------------------------------------------------------------- v1


def _v1_dir(root: str, memberships: dict[str, tuple[str, str]], controller: str) -> str | None:
    """Directory of the process's cgroup in `controller`'s v1 hierarchy, if mounted.

    Tries ROOT/cpu and then the co-mounted name such as ROOT/cpu,cpuacct.
    """
    if controller not in memberships:
        return None
    joined, cgroup_path = memberships[controller]
    for mount in dict.fromkeys((controller, joined)):
        candidate = _join(root, mount, cgroup_path)
        if os.path.isdir(candidate):
            return candidate
    return None


def _read_v1(root: str, memberships: dict[str, tuple[str, str]]) -> CgroupLimits:
    cpuset_dir = _v1_dir(root, memberships, "cpuset")
    memory_dir = _v1_dir(root, memberships, "memory")
    pids_dir = _v1_dir(root, memberships, "pids")
    cpu_dir = _v1_dir(root, memberships, "cpu")
    cpuset = _read(os.path.join(cpuset_dir, "cpuset.cpus")) if cpuset_dir else None
    return CgroupLimits(
        cpuset=cpuset or "",
        memory_limit=_file_number(memory_dir, "memory.limit_in_bytes"),
        pids_max=_file_number(pids_dir, "pids.max"),
        pids_current=_file_number(pids_dir, "pids.current"),
        cpu_shares=_file_number(cpu_dir, "cpu.shares"),
        cfs_quota_us=_file_number(cpu_dir, "cpu.cfs_quota_us"),
        cfs_period_us=_file_number(cpu_dir, "cpu.cfs_period_us"),
    )


# --------------------------------------------------------------------------- v2


def weight_to_shares(weight: int) -> int:
    """Inverse of runc's cgroup v1 shares -> v2 weight mapping (lossy, see module doc)."""
    return 2 + (weight - 1) * 262142 // 9999


def _cpu_max(directory: str) -> tuple[int | None, int | None]:
    """(quota, period) from cpu.max ("max 100000" or "50000 100000"); Nones if absent."""
    path = os.path.join(directory, "cpu.max")
    text = _read(path)
    if text is None:
        return None, None
    fields = text.split()
    if len(fields) != 2:
        raise BackendError(f"unexpected value {text!r} in {path}")
    return _number(fields[0], path), _number(fields[1], path)


def _read_v2(directory: str) -> CgroupLimits:
    if not os.path.isdir(directory):
        raise BackendError(f"cgroup {directory} does not exist (process gone?)")
    cpuset = _read(os.path.join(directory, "cpuset.cpus")) or _read(
        os.path.join(directory, "cpuset.cpus.effective")) or ""
    weight = _file_number(directory, "cpu.weight")
    quota, period = _cpu_max(directory)
    return CgroupLimits(
        cpuset=cpuset,
        memory_limit=_file_number(directory, "memory.max"),
        pids_max=_file_number(directory, "pids.max"),
        pids_current=_file_number(directory, "pids.current"),
        cpu_shares=weight_to_shares(weight) if weight is not None else None,
        cfs_quota_us=quota,
        cfs_period_us=period,
    )
