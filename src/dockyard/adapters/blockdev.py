"""Which block device backs a directory (Docker's data root), as "MAJ:MIN" of the whole disk.

Throttles apply to disks, not partitions: a partition (its /sys/dev/block entry has a
`partition` file) maps to its parent disk.
"""

from __future__ import annotations

import os

from dockyard.errors import BackendError


def device_of(path: str, sys_root: str = "/sys") -> str:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BackendError(f"cannot stat {path}: {exc}") from exc
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    entry = os.path.join(sys_root, "dev", "block", dev)
    if not os.path.exists(entry):
        raise BackendError(f"{path} is not on a block device ({dev}: overlay or tmpfs?)")
    if os.path.exists(os.path.join(entry, "partition")):
        parent = os.path.dirname(os.path.realpath(entry))
        with open(os.path.join(parent, "dev"), encoding="ascii") as fh:
            return fh.read().strip()
    return dev
