"""Where a process's cgroups are, on cgroup v1 and v2, and how their files read.

The base of `cgroup_io` (disk throttles, usage) and `cgroup_stats` (the collector's
counters); read-only here, but for `remove_tree` (the dev-cluster's clean-up of a simulated
host's dockerd cgroup parent).

The process's cgroups come from /proc/PID/cgroup, so any docker `--cgroup-parent` (or none)
works. The version is detected at run time: v2 when the cgroup root has `cgroup.controllers`
(a unified mount); otherwise v1, including the "hybrid" layout whose v2 tree sits at
`ROOT/unified` with all controllers still on v1. On v2 every controller's directory is the
process's one unified directory; on v1 each controller has its own hierarchy, mounted as
ROOT/CONTROLLER or co-mounted (ROOT/cpu,cpuacct).

Numbers (`parse_number`, `read_number`): None means "unlimited" ("max", -1, or v1's
page-counter maximum, i.e. anything >= 2**62) or "this controller is not there" (file
missing, e.g. the root cgroup has no pids.max).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import BackendError

__all__ = ["PROC", "ROOT", "ProcessCgroups", "cgroup_version", "parse_number",
           "process_cgroups", "read_number", "read_text", "remove_tree", "runs_in", "write_text"]

ROOT = "/sys/fs/cgroup"
PROC = "/proc"
_V1_UNLIMITED = 2**62  # v1 reports no limit as PAGE_COUNTER_MAX * PAGE_SIZE (~2**63)


def cgroup_version(root: str = ROOT) -> int:
    """2 when `root` is a unified (v2) mount, else 1 (v1 or hybrid)."""
    return 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1


@dataclass(frozen=True)
class ProcessCgroups:
    """One process's cgroup memberships: controller -> (its hierarchy's controller list,
    cgroup path), the v2 line "0::/path" under the key "" (named v1 hierarchies such as
    "name=systemd" under their name)."""

    pid: int
    version: int
    root: str
    memberships: dict[str, tuple[str, str]]

    @property
    def unified(self) -> str:
        """The process's v2 directory; BackendError on v1 or without a v2 membership."""
        if self.version != 2 or "" not in self.memberships:
            raise BackendError(f"process {self.pid} has no cgroup v2 membership")
        return _join(self.root, self.memberships[""][1])

    def directory(self, controller: str) -> str | None:
        """The directory holding `controller`'s files for this process.

        v2: the unified directory (whatever the controller). v1: the process's cgroup in
        that controller's hierarchy (ROOT/cpu, then the co-mounted name such as
        ROOT/cpu,cpuacct), None when the controller is not mounted or not joined.
        """
        if self.version == 2:
            return self.unified
        if controller not in self.memberships:
            return None
        joined, cgroup_path = self.memberships[controller]
        for mount in dict.fromkeys((controller, joined)):
            candidate = _join(self.root, mount, cgroup_path)
            if os.path.isdir(candidate):
                return candidate
        return None


def process_cgroups(pid: int, root: str = ROOT, proc: str = PROC) -> ProcessCgroups:
    """The cgroups of process `pid` from /proc/PID/cgroup; BackendError when it is gone."""
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
    return ProcessCgroups(pid, cgroup_version(root), root, out)


def runs_in(pid: int, container_id: str, proc: str = PROC) -> bool:
    """True when process `pid` exists and its cgroup path names `container_id` (Docker names
    a container's cgroup after its id): a cached PID is still that container's, not a process
    that reused the number after a restart."""
    try:
        with open(os.path.join(proc, str(pid), "cgroup"), encoding="utf-8") as fh:
            return container_id in fh.read()
    except OSError:
        return False


def _join(root: str, *parts: str) -> str:
    return os.path.join(root, *(p.strip("/") for p in parts if p.strip("/")))


def read_text(path: str) -> str | None:
    """File content stripped, or None when the file does not exist."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise BackendError(f"reading {path}: {exc}") from exc


def parse_number(text: str | None, path: str = "") -> int | None:
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


def read_number(directory: str | None, name: str) -> int | None:
    """`parse_number` of file `name` in `directory` (None for no directory or no file)."""
    if directory is None:
        return None
    path = os.path.join(directory, name)
    return parse_number(read_text(path), path)


def write_text(path: str | Path, text: str) -> None:
    """Write a cgroup file; BackendError naming the file and the kernel's refusal."""
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(text)
    except OSError as exc:
        raise BackendError(f"writing {text!r} to {path}: {exc.strerror or exc}") from exc


def remove_tree(parent: str, root: str = ROOT) -> None:
    """Remove the cgroups under PARENT, deepest first: ROOT/PARENT/** on v2 (one unified
    tree), ROOT/*/PARENT/** on v1 (in every hierarchy). A cgroup still in use (a process left
    in it) stays, silently."""
    base = Path(root)
    if not base.exists():
        return
    for hierarchy in [base] if cgroup_version(root) == 2 else base.iterdir():
        path = hierarchy / parent
        if path.is_dir():
            for sub in sorted(path.rglob("*"), reverse=True):
                if sub.is_dir():
                    _rmdir(sub)
            _rmdir(path)


def _rmdir(path: Path) -> None:
    with contextlib.suppress(OSError):  # in use, or gone meanwhile
        os.rmdir(path)
