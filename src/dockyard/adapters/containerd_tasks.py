"""A container's CRIU checkpoint through containerd itself, straight into a directory.

`docker checkpoint create` (Docker 20.10) has containerd dump into a temporary directory, tar
the images into its content store (a blob written and synced), then dockerd reads the blob
back and untars it into DATA-ROOT/containers/ID/checkpoints/NAME. For a 22 MB image (the
machine image: supervisord's Python heap, sshd) that round trip was ~0.45 s of the downtime
of a live move, twice CRIU's own dump (measured with the CRIU log's clock). Containerd's task
API takes an image path instead (`ctr task checkpoint --image-path`): CRIU writes the images
into the same directory dockerd would have, and nothing is copied. `docker start
--checkpoint NAME` restores from there as before.

Dockerd sees the task exit as it does after `docker checkpoint --exit` (the container stops;
its restart policy was set to "no" first). Containerd is found from the container's own shim:
the parent of its init process runs `containerd-shim-runc-v2 -namespace NS -id ID -address
SOCKET`, so a host's own dockerd (`/run/docker/containerd/…`) and a dev-cluster host's
(`HOME/hN/docker/exec/…`) need no setting. No shim found or no `ctr`: the caller falls back to
`docker checkpoint create`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dockyard.adapters.processes import parent_of
from dockyard.errors import BackendError

__all__ = ["Shim", "checkpoint", "shim_of"]

_PROC = "/proc"
CTR = "ctr"
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Shim:
    """Where a container's task lives: containerd's socket and namespace, the task id."""

    address: str
    namespace: str
    task: str


def shim_of(pid: int, container_id: str, proc: str = _PROC) -> Shim | None:
    """The containerd shim of the container whose init is `pid` (None: not a runc v2 shim of
    this container, or gone)."""
    parent = parent_of(pid, proc) if pid > 0 else None
    if parent is None:
        return None
    try:
        argv = Path(proc, str(parent), "cmdline").read_bytes().rstrip(b"\0").decode(
            errors="replace").split("\0")
    except OSError:
        return None
    if not argv or not Path(argv[0]).name.startswith("containerd-shim"):
        return None
    flags = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("-")}
    address, namespace, task = (flags.get("-address"), flags.get("-namespace"),
                                flags.get("-id"))
    if not address or not namespace or task != container_id:
        return None
    return Shim(address=address, namespace=namespace, task=task)


def available() -> bool:
    return shutil.which(CTR) is not None


def checkpoint(shim: Shim, image_path: Path, work_path: Path) -> None:
    """CRIU-dump the task into `image_path` and let it exit (`ctr task checkpoint --exit`).
    CRIU's log stays in `work_path` (dump.log); a failure's message names it, so the
    caller can quote its error lines (criu.log_errors: the path must hold "criu")."""
    image_path.mkdir(parents=True, exist_ok=True)
    work_path.mkdir(parents=True, exist_ok=True)
    args = [CTR, "--address", shim.address, "--namespace", shim.namespace, "task",
            "checkpoint", "--exit", "--image-path", str(image_path), "--work-path",
            str(work_path), shim.task]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"checkpoint of {shim.task[:12]} through containerd: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise BackendError(f"checkpoint of {shim.task[:12]} through containerd: {detail}; "
                           f"CRIU log: {work_path / 'dump.log'}")
