"""Whether a process is alive, from /proc: the dev-cluster's view of the daemons it started;
and the command lines of every process (`command_lines`: `dockyard reset` finds the
processes of a home, tests and benchmarks the processes they started by their arguments).

A zombie counts as gone (it has exited; only its parent has not collected it yet), and a
child of ours that exited is reaped here, so it does not linger as one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["alive", "command_lines"]

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


def command_lines(proc: str = _PROC) -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process, this one aside; one that ends meanwhile is skipped."""
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        yield int(entry.name), raw.rstrip(b"\0").decode(errors="replace").split("\0")
