"""Whether a process is alive, from /proc: the dev-cluster's view of the daemons it started;
and the command lines of every process (`command_lines`: `dockyard reset` finds the
processes of a home, tests and benchmarks the processes they started by their arguments).
This process and its ancestors are never among them: a wrapper such as `timeout 60 dockyard
reset --home H` or `sudo dockyard …` names the same arguments but is not another Dockyard.

A zombie counts as gone (it has exited; only its parent has not collected it yet), and a
child of ours that exited is reaped here, so it does not linger as one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["alive", "command_lines", "lineage", "parent_of"]

_PROC = "/proc"


def alive(pid: int, proc: str = _PROC) -> bool:
    """True while process `pid` runs (not exited, not a zombie)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(proc, str(pid)).exists() and "zombie" not in _status(pid, proc)


def _status(pid: int, proc: str) -> str:
    try:
        return Path(proc, str(pid), "status").read_text().lower()
    except OSError:
        return ""


def parent_of(pid: int, proc: str = _PROC) -> int | None:
    """The parent's pid from /proc/PID/stat (None when the process is gone)."""
    try:
        stat = Path(proc, str(pid), "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": the comm may hold spaces
    return int(fields[1]) if len(fields) > 1 else None


def lineage(pid: int, proc: str = _PROC) -> set[int]:
    """`pid` and its ancestors up to init."""
    seen: set[int] = set()
    at: int | None = pid
    while at is not None and at > 0 and at not in seen:
        seen.add(at)
        at = parent_of(at, proc)
    return seen


def command_lines(proc: str = _PROC) -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process but this one and its ancestors; one that ends meanwhile
    is skipped."""
    ours = lineage(os.getpid(), proc)
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        yield int(entry.name), raw.rstrip(b"\0").decode(errors="replace").split("\0")
