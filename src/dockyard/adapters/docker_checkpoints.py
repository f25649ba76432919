"""Checkpoints for live migration: `docker checkpoint create` and `docker start
--checkpoint` (CRIU, experimental dockerd only), and where dockerd keeps them.

Part of the `DockerEngine` facade (`docker_engine`). The SDK has no call for either, so both
go through `docker_sdk` (post_json, post_query).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from dockyard.adapters.docker_containers import ContainerInfo, container_info
from dockyard.adapters.docker_sdk import post_json, post_query, translate

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoint calls of `DockerEngine` (`api`: the SDK's low-level APIClient)."""

    api: Any
    data_root: Callable[[], str]  # dockerd's DockerRootDir (`DockerEngine.data_root`)
    _data_root: str | None = None

    def checkpoint(self, name: str, checkpoint: str) -> None:
        """`docker checkpoint create --leave-running=false`: CRIU dumps the container's
        processes into DATA-ROOT/containers/ID/checkpoints/CHECKPOINT and the container stops
        (experimental dockerd only). The default directory on purpose: `docker start` refuses
        a custom --checkpoint-dir ("custom checkpointdir is not supported", moby#37344)."""
        with translate(f"checkpoint {name}"):
            post_json(self.api, "/containers/{0}/checkpoints", name,
                      {"CheckpointID": checkpoint, "Exit": True})

    def start_checkpoint(self, name: str, checkpoint: str) -> ContainerInfo:
        """`docker start --checkpoint CHECKPOINT`: CRIU restores the processes into the
        (created or stopped) container from its own checkpoints directory."""
        with translate(f"restore {name} from {checkpoint}"):
            post_query(self.api, "/containers/{0}/start", name, {"checkpoint": checkpoint})
            return container_info(self.api.inspect_container(name))

    def checkpoint_dir(self, container_id: str, checkpoint: str) -> str:
        """Where dockerd keeps a container's checkpoint (its default directory)."""
        root = self._data_root
        if root is None:  # `docker info` is slow (~0.1 s): asked once, it does not change
            root = self._data_root = self.data_root()
        return os.path.join(root, "containers", container_id, "checkpoints", checkpoint)
