"""Images through dockerd: pull and push (with registry credentials), load, import, tag,
commit, remove, and the listings image GC and `image list --local` read.

Part of the `DockerEngine` facade (`docker_engine`). Credentials given to `log_in` go with
every pull and push of that registry, per call, as `docker login` would; nothing is written
to the engine's or a user's config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from dockyard.adapters.docker_sdk import raise_stream_error, translate
from dockyard.errors import BackendError, Conflict, NotFound

__all__ = ["ImageRecord", "Images"]


@dataclass(frozen=True)
class ImageRecord:
    id: str
    tags: list[str]
    size: int
    created: float  # epoch seconds


class Images:
    """The image calls of `DockerEngine` (`api`: the SDK's low-level APIClient)."""

    api: Any
    _registry = ""  # HOST:PORT whose pulls and pushes carry _credentials
    _credentials: dict[str, str] | None = None

    def log_in(self, registry: str, username: str, password: str) -> None:
        """Credentials for every pull and push of `registry` (see the module docstring)."""
        self._registry = registry
        self._credentials = {"username": username, "password": password,
                             "serveraddress": registry}

    def _auth(self, ref: str) -> dict[str, str] | None:
        return self._credentials if self._registry and \
            ref.startswith(f"{self._registry}/") else None

    def image_id(self, ref: str) -> str | None:
        """The id of image `ref`, or None when the engine does not have it."""
        try:
            with translate(f"inspect image {ref}"):
                return str(self.api.inspect_image(ref)["Id"])
        except NotFound:
            return None

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def pull(self, ref: str) -> Iterator[dict[str, Any]]:
        """`docker pull`, yielding dockerd's progress messages. An error dockerd reports
        inside the stream (registry gone, manifest unknown) raises like any other."""
        with translate(f"pull {ref}"):
            stream = self.api.pull(ref, stream=True, decode=True, auth_config=self._auth(ref))
        with translate(f"pull {ref}"):
            for message in stream:
                raise_stream_error(f"pull {ref}", message)
                yield message

    def push(self, source: str, target: str) -> Iterator[dict[str, Any]]:
        """Tag `source` as `target`, `docker push` it (yielding progress) and drop that tag
        again, so the engine's list shows only the user's own names."""
        with translate(f"tag {source}"):
            repository, _, tag = target.rpartition(":")
            self.api.tag(source, repository, tag)
        try:
            with translate(f"push {target}"):
                for message in self.api.push(repository, tag, stream=True, decode=True,
                                             auth_config=self._auth(target)):
                    raise_stream_error(f"push {target}", message)
                    yield message
        finally:
            if target != source:
                with suppress(NotFound, Conflict, BackendError), translate(f"untag {target}"):
                    self.api.remove_image(target, noprune=True)

    def load(self, archive: BinaryIO) -> list[str]:
        """`docker load` from an open `docker save` archive (streamed from the file); the
        names (or ids) dockerd says it loaded."""
        loaded: list[str] = []
        with translate("load image archive"):
            for message in self.api.load_image(archive):
                raise_stream_error("load image archive", message)
                text = str(message.get("stream") or "")
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix):].strip())
        return loaded

    def import_tarball(self, tarball: IO[bytes], repository: str, tag: str,
                       changes: list[str]) -> None:
        """`docker import` of a root filesystem tar stream (a chunked upload read from
        `tarball`, e.g. a pipe), with Dockerfile `changes` such as CMD and LABEL."""
        with translate(f"import {repository}:{tag}"):
            self.api.import_image(src=tarball, repository=repository, tag=tag,
                                  changes=changes, stream_src=True)

    def tag(self, source: str, target: str) -> None:
        repository, _, tag = target.rpartition(":")
        with translate(f"tag {source}"):
            self.api.tag(source, repository, tag)

    def remove_image(self, ref: str, untag_only: bool = False) -> None:
        """Remove an image (or only this tag of it); one already gone is success."""
        with suppress(NotFound), translate(f"remove image {ref}"):
            self.api.remove_image(ref, noprune=untag_only)

    def commit(self, name: str, target: str, pause: bool) -> str:
        """`docker commit` of a (running) container as `target`; the container keeps running
        with the same PID (frozen meanwhile when `pause`)."""
        repository, _, tag = target.rpartition(":")
        with translate(f"commit {name}"):
            reply = self.api.commit(name, repository=repository, tag=tag, pause=pause)
        return str(reply["Id"])

    def image_records(self) -> list[ImageRecord]:
        """Every image of the engine with its tags, size and creation time."""
        with translate("list images"):
            rows = self.api.images()
        return [ImageRecord(id=str(r["Id"]), tags=[t for t in r.get("RepoTags") or []
                                                    if t != "<none>:<none>"],
                            size=int(r.get("Size") or 0), created=float(r.get("Created") or 0))
                for r in rows]

    def images_in_use(self) -> set[str]:
        """Image ids that any container (running or not) of the engine was made from."""
        with translate("list containers"):
            return {str(c.get("ImageID") or "") for c in self.api.containers(all=True)}
