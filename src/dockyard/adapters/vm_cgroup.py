"""The memory cgroup of a VM's QEMU: `dockyard-vms/<instance id>` under the memory
controller (v1: ROOT/memory/dockyard-vms/ID; v2: ROOT/dockyard-vms/ID with `+memory` enabled
for its children), holding every QEMU thread, with the limit the agent gives it.

`ensure` is idempotent (made if missing, the limit written only when different, the process
moved in only when elsewhere) so each sync repairs it; `remove` rmdirs it once the process is
gone (an empty cgroup's directory is all there is to remove), and the parent once empty.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from dockyard.adapters.cgroups import ROOT, cgroup_version, read_number, write_text
from dockyard.errors import BackendError

PARENT = "dockyard-vms"


def directory(instance_id: str, root: str = ROOT) -> Path:
    base = Path(root) / ("memory" if cgroup_version(root) == 1 else "")
    return base / PARENT / instance_id


def _limit_file(root: str) -> str:
    return "memory.limit_in_bytes" if cgroup_version(root) == 1 else "memory.max"


def _make(path: Path, root: str) -> None:
    if cgroup_version(root) == 2:  # the controller must be enabled down to the parent
        for parent in (Path(root), path.parent):
            parent.mkdir(exist_ok=True)
            control = parent / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                write_text(control, "+memory")
    path.mkdir(parents=True, exist_ok=True)


def ensure(instance_id: str, pid: int, limit_bytes: int, root: str = ROOT) -> None:
    """QEMU `pid` (all its threads) in the VM's cgroup with `limit_bytes` of memory."""
    path = directory(instance_id, root)
    try:
        _make(path, root)
    except OSError as exc:
        raise BackendError(f"making cgroup {path}: {exc.strerror}") from exc
    if read_number(str(path), _limit_file(root)) != limit_bytes:
        write_text(path / _limit_file(root), str(limit_bytes))
    if str(pid) not in (path / "cgroup.procs").read_text().split():
        try:
            write_text(path / "cgroup.procs", str(pid))
        except BackendError:
            if os.path.exists(f"/proc/{pid}"):
                raise  # a process that ended meanwhile is the next sync's business


def limit(instance_id: str, root: str = ROOT) -> int | None:
    """The limit in force (None: no such cgroup, or unlimited)."""
    return read_number(str(directory(instance_id, root)), _limit_file(root))


def remove(instance_id: str, root: str = ROOT) -> None:
    """Remove the VM's cgroup (its QEMU is gone). Idempotent."""
    path = directory(instance_id, root)
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise BackendError(f"removing cgroup {path}: {exc.strerror}") from exc
        raise BackendError(f"cgroup {path} still holds processes") from exc
    # the parent too once it is empty (another VM's cgroup in it keeps it: EBUSY/ENOTEMPTY;
    # an `ensure` racing this makes it again with its own directory)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
