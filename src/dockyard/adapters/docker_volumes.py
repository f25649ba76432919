"""Docker volumes (`dyv-<id>`, the named volumes of instances): where one lives on the
host, create, remove. Part of the `DockerEngine` facade (`docker_engine`)."""

from __future__ import annotations

from typing import Any

from dockyard.adapters.docker_sdk import translate
from dockyard.errors import NotFound

__all__ = ["Volumes"]


class Volumes:
    """The volume calls of `DockerEngine` (`api`: the SDK's low-level APIClient)."""

    api: Any

    def volume_path(self, name: str, create: bool = False) -> str:
        """The host directory of a local volume (created first when asked)."""
        if create:
            with translate(f"create volume {name}"):
                self.api.create_volume(name)
        with translate(f"inspect volume {name}"):
            return str(self.api.inspect_volume(name)["Mountpoint"])

    def remove_volume(self, name: str) -> None:
        """Remove a Docker volume; one already gone is success. In use → Conflict."""
        try:
            with translate(f"remove volume {name}"):
                self.api.remove_volume(name)
        except NotFound:
            pass
