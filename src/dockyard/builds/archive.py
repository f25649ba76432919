"""An uploaded build context (a tar archive, plain or gzip) checked before it is stored: the
compose `build:` of a local directory (issue #13). Pure: the archive arrives as bytes.

    bytes ─▶ sha256 (the build's tag is its first 12 hex digits)
          ─▶ a tar archive (else 422) ─▶ each member: a relative path without `..`, a
             regular file, directory or link whose target stays inside (no devices, FIFOs,
             absolute or escaping links) ─▶ at most MAX_MEMBERS members and `max_unpacked`
             bytes unpacked (a gzip bomb stops there), each file read through (a truncated
             archive fails) ─▶ the Dockerfile is a regular file in it

The agent unpacks it with tarfile's `data` filter, which refuses the same things again.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass

from dockyard.errors import InvalidRequest

MAX_MEMBERS = 100_000


@dataclass(frozen=True)
class Archive:
    sha256: str
    size: int  # bytes as uploaded
    unpacked: int  # bytes of its files
    members: int


def _inside(path: str) -> str | None:
    """`path` normalised relative to the archive's root, or None when it leaves it."""
    if not path or path.startswith("/"):
        return None
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = _inside(member.name)
    if name is None:
        return f"{member.name!r}: a path outside the archive"
    if member.isreg() or member.isdir():
        return None
    if member.issym():
        target = member.linkname if member.linkname.startswith("/") else \
            posixpath.join(posixpath.dirname(name), member.linkname)
        if _inside(target) is None:
            return f"{member.name!r}: a symbolic link to {member.linkname!r}, outside the archive"
        return None
    if member.islnk():
        if _inside(member.linkname) is None:
            return f"{member.name!r}: a hard link to {member.linkname!r}, outside the archive"
        return None
    return f"{member.name!r}: not a file, directory or link (devices and FIFOs are refused)"


def _read_through(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    body = tar.extractfile(member)
    if body is None:
        return
    with body:
        left = member.size
        while left > 0:
            chunk = body.read(min(left, 1 << 20))
            if not chunk:
                raise InvalidRequest(f"the build context is truncated in {member.name!r}")
            left -= len(chunk)


def check_archive(data: bytes, dockerfile: str, max_unpacked: int) -> Archive:
    """The archive's digest and size once every check passed; InvalidRequest (422) naming
    the first problem otherwise."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidRequest("the build context is not a tar archive (plain, gzip, bzip2 "
                             "or xz)") from exc
    unpacked = 0
    members = 0
    files: set[str] = set()
    try:
        with tar:
            for member in tar:
                members += 1
                if members > MAX_MEMBERS:
                    raise InvalidRequest(f"the build context has more than {MAX_MEMBERS} "
                                         "entries")
                problem = _member_problem(member)
                if problem is not None:
                    raise InvalidRequest(f"the build context is refused: {problem}")
                unpacked += max(member.size, 0)
                if unpacked > max_unpacked:
                    raise InvalidRequest(f"the build context unpacks to more than "
                                         f"{max_unpacked} bytes")
                if member.isreg():
                    _read_through(tar, member)  # a truncated or corrupt body fails here
                    files.add(posixpath.normpath(member.name))
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # a truncated archive
        raise InvalidRequest(f"the build context is not a readable tar archive: {exc}") \
            from exc
    if members == 0:
        raise InvalidRequest("the build context is an empty archive")
    if posixpath.normpath(dockerfile) not in files:
        raise InvalidRequest(f"the build context has no Dockerfile at {dockerfile}")
    return Archive(sha256=hashlib.sha256(data).hexdigest(), size=len(data), unpacked=unpacked,
                   members=members)
