"""Facts about this machine for the agent's inventory: cores, memory, kernel, capabilities.

Invariants: read-only; every value describes the whole machine, not the agent's own limits
(the agent may itself run confined, but instances are placed on the machine's cores).
"""

from __future__ import annotations

import os

from dockyard.errors import BackendError
from dockyard.model.cpulist import parse_cpu_list
from dockyard.model.validators import CAPABILITIES

__all__ = ["bounding_capabilities", "kernel_release", "memory_total", "online_cores"]

_CPU_ONLINE = "/sys/devices/system/cpu/online"
_MEMINFO = "/proc/meminfo"
_STATUS = "/proc/self/status"


def online_cores() -> list[int]:
    """Online CPUs of the machine (/sys/devices/system/cpu/online).

    Falls back to the agent's own affinity (os.sched_getaffinity) when sysfs is unreadable.
    """
    try:
        with open(_CPU_ONLINE, encoding="ascii") as fh:
            cores = parse_cpu_list(fh.read())
        if cores:
            return cores
    except (OSError, ValueError):
        pass
    return sorted(os.sched_getaffinity(0))


def memory_total() -> int:
    """Physical memory in bytes (MemTotal of /proc/meminfo)."""
    try:
        with open(_MEMINFO, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    value, unit = line.split()[1:3]
                    if unit != "kB":
                        raise BackendError(f"unexpected MemTotal unit {unit!r}")
                    return int(value) * 1024
    except OSError as exc:
        raise BackendError(f"reading {_MEMINFO}: {exc}") from exc
    raise BackendError(f"no MemTotal in {_MEMINFO}")


def kernel_release() -> str:
    """The running kernel's release string, as `uname -r` prints it."""
    return os.uname().release


def bounding_capabilities() -> frozenset[str]:
    """The capabilities this machine grants (the agent's bounding set, as dockerd's: both run
    as root here), by kernel name without `CAP_`. Containers cannot get any other."""
    try:
        with open(_STATUS, encoding="ascii") as fh:
            line = next((ln for ln in fh if ln.startswith("CapBnd:")), "")
    except OSError as exc:
        raise BackendError(f"reading {_STATUS}: {exc}") from exc
    mask = int(line.split(":", 1)[1].strip() or "0", 16) if line else 0
    return frozenset(cap for bit, cap in enumerate(CAPABILITIES) if mask >> bit & 1)
