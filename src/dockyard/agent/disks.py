"""Container disks (`--disk SIZE`, issue #15): one ext4 file per container layer under
HOME/disks/<instance id>/, loop-mounted over the layer's directory before the container
starts (adapters/loopdisk.py says why not xfs project quotas). Level-triggered: `ensure` makes
what is missing (the file at the first start; the mount after a host reboot), `release`
unmounts and removes everything of an instance (delete, failed create).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from dockyard.adapters import loopdisk
from dockyard.errors import BackendError

log = logging.getLogger(__name__)


class ContainerDisks:
    def __init__(self, home: Path) -> None:
        self.root = home / "disks"

    def dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def ensure(self, instance_id: str, layer_dir: str, size: int) -> None:
        """The layer at `layer_dir` (Docker's overlay2 directory of the container) lives in
        its own `size`-byte filesystem."""
        if not layer_dir:
            raise BackendError("container disk sizes need Docker's overlay2 storage driver")
        layer = Path(layer_dir)
        if loopdisk.mounted(layer):
            return
        image = self.dir(instance_id) / f"{layer.name}.ext4"
        if not image.exists():
            loopdisk.make(image, size, layer)
        (self.dir(instance_id) / f"{layer.name}.at").write_text(layer_dir)
        loopdisk.mount(image, layer)

    def release(self, instance_id: str) -> None:
        """Unmount every layer of the instance and remove its files (a stopped or removed
        container holds nothing open on them)."""
        where = self.dir(instance_id)
        if not where.is_dir():
            return
        for at in where.glob("*.at"):
            loopdisk.unmount(Path(at.read_text()))
        shutil.rmtree(where)
