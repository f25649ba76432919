"""A local build context packed as Docker packs it: the directory as a tar archive, without
what its `.dockerignore` excludes (docker-py's own matcher, the rules of `docker build`: `#`
comments, `**`, `!` exceptions); the Dockerfile is always kept. The CLI's `stack deploy`
uploads it for a compose `build:` with a local directory (issue #13)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO

from docker.utils import build as docker_build

from dockyard.errors import InvalidRequest


def dockerignore(directory: Path) -> list[str]:
    """The patterns of `directory/.dockerignore` (none when it has none), as docker-py reads
    them for `docker build`."""
    path = directory / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pack(directory: Path, dockerfile: str) -> BinaryIO:
    """`directory` as an uncompressed tar archive in a temporary file (deleted on close),
    positioned at its start; the same files give the same bytes (sorted, their own times)."""
    if not directory.is_dir():
        raise InvalidRequest(f"build context {directory} is not a directory")
    if not (directory / dockerfile).is_file():
        raise InvalidRequest(f"build context {directory} has no Dockerfile {dockerfile}")
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    try:
        docker_build.tar(str(directory), exclude=dockerignore(directory),
                         dockerfile=(dockerfile, None), fileobj=out)
    except OSError as exc:
        out.close()
        raise InvalidRequest(f"cannot pack build context {directory}: {exc}") from exc
    out.seek(0)
    return out
