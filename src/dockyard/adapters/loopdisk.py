"""A container's sized disk: its own ext4 filesystem in a sparse file, loop-mounted over the
directory of the container's overlay2 layer (`diff/` and `work/`), so everything the container
writes lands in that filesystem: `df /` inside shows its size (overlayfs reports the upper
layer's filesystem) and writing past it fails with ENOSPC there only.

Docker's own way (`--storage-opt size`) needs overlay2 on xfs mounted with `pquota`; this
machine's kernel has no quota support (XFS says "quota support not available in this
kernel"), so Dockyard does not depend on it: a loop device and ext4 need nothing beyond the
kernel's loop driver and e2fsprogs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dockyard.errors import BackendError

MKFS = "mkfs.ext4"


def _run(args: list[str]) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise BackendError(f"{' '.join(args[:2])}: {done.stderr.strip() or done.stdout.strip()}")


def make(image: Path, size: int, content: Path) -> None:
    """A sparse file holding an ext4 filesystem with a copy of `content` (the layer directory
    as Docker made it: ownership, modes and links kept; no reserved blocks) whose room for
    files is `size` bytes: `df` shows the size asked for. ext4 keeps 2-15 % of a filesystem
    for itself (journal, inode tables, bitmaps), so the file is grown by that much, measured
    on the filesystem mkfs made (a second pass covers the metadata of the added part)."""
    image.parent.mkdir(parents=True, exist_ok=True)
    total = size
    try:
        for _ in range(3):
            with open(image, "wb") as fh:
                fh.truncate(total)
            _run([MKFS, "-q", "-F", "-m", "0", "-d", str(content), str(image)])
            kept = total - _free_bytes(image)  # ext4's own blocks and the copied layer
            if total - kept >= size:
                return
            total = size + kept
    except BackendError:
        image.unlink(missing_ok=True)
        raise


def _free_bytes(image: Path) -> int:
    try:
        done = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"dumpe2fs: {exc}") from exc
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    try:
        return int(fields["Free blocks"]) * int(fields["Block size"])
    except (KeyError, ValueError) as exc:
        raise BackendError(f"dumpe2fs -h {image}: no block counts ({done.stderr.strip()})") \
            from exc


def mounted(target: Path) -> bool:
    return os.path.ismount(target)


def mount(image: Path, target: Path) -> None:
    """Loop-mount `image` over `target` (the loop device is released at the unmount)."""
    _run(["mount", "-o", "loop", str(image), str(target)])


def unmount(target: Path) -> None:
    if mounted(target):
        _run(["umount", str(target)])
