"""Image builds with dockerd's classic builder (BuildKit needs the internet for its frontend
image here): a tar of the context posted to `/build`, its JSON messages read as they come.

A `BuildSession` can be stopped from another thread (the build's time limit, a cancel): its
socket is shut, dockerd cancels the build and kills the step's container (docker_sdk).
Base images are never pulled by the build (`pull=False`): the caller pulls them first,
with the registry's credentials.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.api.build
import docker.utils

from dockyard.adapters.docker_sdk import post_build, shut_stream, translate
from dockyard.errors import InvalidRequest

__all__ = ["BuildLimits", "BuildSession", "context_tar"]

CPU_PERIOD = 100_000  # µs, Docker's default CFS period


@dataclass(frozen=True)
class BuildLimits:
    memory_bytes: int
    cpus: float


def _ignored(context: Path) -> list[str] | None:
    path = context / ".dockerignore"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def context_tar(root: Path, context: str, dockerfile: str) -> tuple[Any, str]:
    """The build context under the checkout `root` as a tar file object, and the Dockerfile's
    name in it. Both paths must stay inside the checkout (a symlink out of it is refused)."""
    base = root.resolve()
    ctx = (root / context).resolve()
    dfile = (root / dockerfile).resolve()
    for what, path in (("context", ctx), ("dockerfile", dfile)):
        if path != base and base not in path.parents:
            raise InvalidRequest(f"{what} {path} leaves the repository")
    if not ctx.is_dir():
        raise InvalidRequest(f"context {context} is not a directory of the repository")
    if not dfile.is_file():
        raise InvalidRequest(f"no Dockerfile at {dockerfile} in the repository")
    name, content = docker.api.build.process_dockerfile(os.fspath(dfile), os.fspath(ctx))
    tar = docker.utils.tar(os.fspath(ctx), exclude=_ignored(ctx), dockerfile=(name, content))
    return tar, str(name)


class BuildSession:
    """One classic build: `messages()` yields dockerd's JSON messages ({"stream": …},
    {"aux": {"ID": …}}, {"error": …}); `stop()` (any thread) ends it."""

    def __init__(self, api: Any, root: Path, context: str, dockerfile: str,
                 tag: str, limits: BuildLimits) -> None:
        self._tar, name = context_tar(root, context, dockerfile)
        # each step's container: `memory` with no swap on top (memswap = memory), and a CFS
        # quota of `cpus` over the default 100 ms period (docker build --memory/--cpu-quota)
        self._params = {"t": tag, "dockerfile": name, "rm": "1", "forcerm": "1",
                        "pull": "0", "q": "0", "memory": str(limits.memory_bytes),
                        "memswap": str(limits.memory_bytes), "cpuperiod": str(CPU_PERIOD),
                        "cpuquota": str(max(1000, round(limits.cpus * CPU_PERIOD)))}
        self._api = api
        self._response: Any = None
        self._stopped = False

    def messages(self) -> Iterator[dict[str, Any]]:
        try:
            with translate("build"):
                self._response = post_build(self._api, self._params, self._tar)
            if self._stopped:
                shut_stream(self._response)
            with translate("build"):
                for raw in self._response.iter_lines():
                    if raw.strip():
                        yield json.loads(raw)
        except Exception:
            if self._stopped:
                return  # the stop ended the read; the caller knows why
            raise
        finally:
            if self._response is not None:
                self._response.close()
            self._tar.close()

    def stop(self) -> None:
        self._stopped = True
        if self._response is not None:
            shut_stream(self._response)
