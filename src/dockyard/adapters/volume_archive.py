"""Volume contents as tar streams (GNU tar): archive a directory, fill one from a stream,
and the delta pass of a migration (files changed since a time, then prune what the source no
longer has). Streams go through pipes, never whole into memory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from dockyard.errors import BackendError, InvalidRequest

CHUNK = 1 << 16


def tar_stream(path: str, newer_than: float | None = None) -> Iterator[bytes]:
    """The directory as a tar stream; with `newer_than` (epoch seconds) only entries whose
    data or status changed since then (directories always come along)."""
    args = ["tar", "-C", path, "--numeric-owner", "-cf", "-"]
    if newer_than is not None:
        args.append(f"--newer=@{newer_than:.3f}")
    yield from _stream([*args, "."], path)


def layer_stream(path: str) -> Iterator[bytes]:
    """A container's writable layer as a tar stream: device nodes (overlay whiteouts) and
    extended attributes (trusted.overlay.opaque) kept."""
    return _stream(["tar", "-C", path, "--numeric-owner", "--xattrs", "--xattrs-include=*",
                    "-cf", "-", "."], path)


def untar_layer(path: str, chunks: Iterable[bytes]) -> None:
    """Fill a container's (not yet started) writable layer from `layer_stream`."""
    _extract(["tar", "-C", path, "--numeric-owner", "--xattrs", "--xattrs-include=*",
              "-xpf", "-"], path, chunks)


def _stream(args: list[str], path: str) -> Iterator[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
    finally:
        proc.stdout.close()
        err = b""
        if proc.stderr:
            err = proc.stderr.read()
            proc.stderr.close()
        if proc.wait() not in (0, 1):  # 1: a file changed while read (the live pass)
            raise BackendError(f"tar of {path}: {err.decode(errors='replace')[:300]}")


def _extract(args: list[str], path: str, chunks: Iterable[bytes],
             failure: str = "cannot extract into {path}") -> None:
    """Feed `chunks` to an extracting command run into `path`; InvalidRequest (with the
    command's complaint) when it fails."""
    os.makedirs(path, exist_ok=True)
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass
    finally:
        proc.stdin.close()
    err = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise InvalidRequest(failure.format(path=path) + ": "
                             f"{err.decode(errors='replace')[:300]}")


def untar(path: str, chunks: Iterable[bytes]) -> None:
    """Extract a tar stream into `path` (kept: owners, modes, times)."""
    _extract(["tar", "-C", path, "--numeric-owner", "-xpf", "-"], path, chunks,
             "not a tar archive (or cannot extract into {path})")


def paths(path: str) -> list[str]:
    """Every entry below `path`, relative."""
    root = Path(path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def prune(path: str, keep: set[str]) -> int:
    """Remove entries the source no longer has; returns how many went."""
    root = Path(path)
    gone = 0
    for rel in sorted(paths(path), key=len, reverse=True):
        if rel in keep:
            continue
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        gone += 1
    return gone
