"""The Docker adapter: `DockerEngine`, one facade over the docker SDK's low-level API.

The agent holds one engine; its calls live in one module per concern, which the facade
combines:

=================== ==========================================================================
module              calls
=================== ==========================================================================
docker_containers   create, start, inspect, update (live), stop, remove, rename, list_owned,
                    owned_states, running_owned, top, logs, events, mounts, upper_dir,
                    set_restart_policy
docker_images       log_in, pull, push, load, import_tarball, tag, commit, remove_image,
                    image_id, image_exists, image_records, images_in_use
docker_exec         exec, attach_exec (`ExecSession`)
docker_checkpoints  checkpoint, start_checkpoint, checkpoint_dir
docker_volumes      volume_path, remove_volume
this module         connect, close, version, info, data_root
=================== ==========================================================================

Every docker/requests exception is translated in `docker_sdk.translate` and nowhere else, and
the few private SDK calls live there too (see its docstring). The types callers use are
re-exported here, so `from dockyard.adapters.docker_engine import …` is the one import.
"""

from __future__ import annotations

from typing import Any

import docker

from dockyard.adapters.docker_checkpoints import Checkpoints
from dockyard.adapters.docker_containers import (
    CPU_PERIOD,
    RESTART_POLICY,
    ContainerInfo,
    Containers,
    ContainerSpec,
    ContainerState,
    MountSpec,
    Resources,
    cpu_quota,
)
from dockyard.adapters.docker_exec import Exec, ExecSession
from dockyard.adapters.docker_images import ImageRecord, Images
from dockyard.adapters.docker_sdk import translate
from dockyard.adapters.docker_volumes import Volumes

__all__ = ["CPU_PERIOD", "RESTART_POLICY", "ContainerInfo", "ContainerSpec", "ContainerState",
           "DockerEngine", "ExecSession", "ImageRecord", "MountSpec", "Resources", "cpu_quota"]


class DockerEngine(Containers, Images, Exec, Checkpoints, Volumes):
    """One dockerd: `api` is the SDK's low-level APIClient every call goes through."""

    def __init__(self, base_url: str | None = None, timeout: int = 60) -> None:
        with translate("connect to dockerd"):
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                self._client = docker.from_env(timeout=timeout)
        self.api = self._client.api

    def close(self) -> None:
        self._client.close()

    def version(self) -> str:
        with translate("docker version"):
            return str(self.api.version().get("Version", ""))

    def data_root(self) -> str:
        with translate("docker info"):
            return str(self.api.info().get("DockerRootDir", "/var/lib/docker"))

    def info(self) -> dict[str, Any]:
        """`docker info` as dockerd answers it (Driver, DriverStatus, LiveRestoreEnabled, ...)."""
        with translate("docker info"):
            return dict(self.api.info())
