"""Whether a process is alive, from /proc: the dev-cluster's view of the daemons it started.

A zombie counts as gone (it has exited; only its parent has not collected it yet), and a
child of ours that exited is reaped here, so it does not linger as one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive"]

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
