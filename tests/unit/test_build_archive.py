"""Uploaded build contexts (issue #13, compose `build:` of a local directory).

`builds/archive.check_archive` on archives made here with tarfile: a plain or gzip archive
with its Dockerfile passes with its sha256; garbage, a truncated archive, paths and links
outside the archive, devices, an archive that unpacks beyond the limit and one without the
Dockerfile are refused with the reason (the upload endpoint: test_build_hooks_api.py). The
CLI's packing honours .dockerignore and gives the same bytes twice. The agent unpacks the
archive the server sent after checking its sha256, and refuses a damaged one, one with a
link outside itself (tarfile's `data` filter), a missing one and a build id that is a path."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path
from typing import cast

import pytest

from dockyard.adapters.build_context import pack
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.agent.build import Builder
from dockyard.builds.archive import check_archive
from dockyard.errors import DockyardError, InvalidRequest
from dockyard.model.build import AgentBuild

DOCKERFILE = b"FROM registry:5000/dockyard/busybox\nCOPY . /app\n"
LIMIT = 1 << 20


def _tar(*entries: tarfile.TarInfo | tuple[str, bytes], compress: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    data = out.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


@pytest.mark.parametrize("compress", [False, True])
def test_a_context_with_its_dockerfile_passes(compress: bool) -> None:
    data = _tar(("Dockerfile", DOCKERFILE), ("./app/main.sh", b"echo hi\n"),
                _link("app/current", "main.sh"), _link("app/again", "app/main.sh",
                                                        tarfile.LNKTYPE),
                compress=compress)
    found = check_archive(data, "Dockerfile", LIMIT)
    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert (found.size, found.members) == (len(data), 4)
    assert found.unpacked == len(DOCKERFILE) + len(b"echo hi\n")


def test_the_dockerfile_may_live_in_a_subdirectory() -> None:
    data = _tar(("docker/Dockerfile.prod", DOCKERFILE))
    assert check_archive(data, "docker/Dockerfile.prod", LIMIT).members == 1
    with pytest.raises(InvalidRequest, match="no Dockerfile at Dockerfile"):
        check_archive(data, "Dockerfile", LIMIT)


BAD_CONTEXTS = [
    (b"", "not a tar archive"),
    (b"this is not a tar archive at all" * 40, "not a tar archive"),
    (gzip.compress(b"garbage" * 100, mtime=0), "not a tar archive"),
    (_tar(("Dockerfile", DOCKERFILE))[:700], "not a readable tar archive"),
    (_tar(("Dockerfile", DOCKERFILE), ("../etc/passwd", b"x")), "outside the archive"),
    (_tar(("Dockerfile", DOCKERFILE), ("/etc/cron.d/x", b"x")), "outside the archive"),
    (_tar(("Dockerfile", DOCKERFILE), ("a/../../x", b"x")), "outside the archive"),
    (_tar(("Dockerfile", DOCKERFILE), _link("up", "../../etc")), "symbolic link"),
    (_tar(("Dockerfile", DOCKERFILE), _link("abs", "/etc/shadow")), "symbolic link"),
    (_tar(("Dockerfile", DOCKERFILE), _link("hard", "/etc/shadow", tarfile.LNKTYPE)),
     "hard link"),
    (_tar(("Dockerfile", DOCKERFILE), _special("null", tarfile.CHRTYPE)), "devices"),
    (_tar(("Dockerfile", DOCKERFILE), _special("pipe", tarfile.FIFOTYPE)), "FIFOs"),
    (_tar(("Dockerfile", DOCKERFILE), ("big", b"\0" * (LIMIT + 1)), compress=True),
     "unpacks to more than"),
    (_tar(("app/main.sh", b"x")), "no Dockerfile at Dockerfile"),
    (_tar(_link("Dockerfile", "app/Dockerfile"), ("app/Dockerfile", DOCKERFILE)),
     "no Dockerfile at Dockerfile"),
]


# Ids by position: the archives' bytes in the ids would have to be identical in every
# pytest-xdist worker's collection (a gzip header's mtime once made them differ, CI stop 24).
@pytest.mark.parametrize(("data", "reason"), BAD_CONTEXTS,
                         ids=[f"case{i}" for i in range(len(BAD_CONTEXTS))])
def test_bad_contexts_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        check_archive(data, "Dockerfile", LIMIT)


def test_pack_honours_dockerignore_and_keeps_the_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_bytes(DOCKERFILE)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.sh").write_text("echo hi\n")
    (tmp_path / "app" / "secret.key").write_text("k")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("x")
    (tmp_path / ".dockerignore").write_text("# comment\nnode_modules\n**/*.key\nDockerfile\n")
    with pack(tmp_path, "Dockerfile") as archive:
        data = archive.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert names == [".dockerignore", "Dockerfile", "app/main.sh"]
    with pack(tmp_path, "Dockerfile") as again:
        assert again.read() == data  # the same files, the same bytes (the same image tag)
    assert check_archive(data, "Dockerfile", LIMIT).members >= 3
    with pytest.raises(InvalidRequest, match="no Dockerfile Dockerfile.prod"):
        pack(tmp_path, "Dockerfile.prod")


# --- the agent's side: the archive the server sent, unpacked where a clone would be -------------

def _agent_build(build_id: str, sha256: str) -> AgentBuild:
    return AgentBuild(id=build_id, url=None, ref=f"sha256:{sha256}", commit=None,
                      dockerfile="Dockerfile", context=".", repository="reg:5000/default/web",
                      branch_tag=None, credentials=None, timeout=60, memory_bytes=1 << 30,
                      cpus=1.0, archive_sha256=sha256)


def _sent(builder: Builder, build_id: str, data: bytes) -> None:
    target = builder.upload_dir(build_id)
    target.mkdir()
    (target / "context.tar").write_bytes(data)


def test_the_agent_unpacks_the_archive_it_was_sent(tmp_path: Path) -> None:
    builder = Builder(cast(DockerEngine, None), "reg:5000", tmp_path / "builds")
    data = _tar(("Dockerfile", DOCKERFILE), ("app/main.sh", b"echo hi\n"))
    _sent(builder, "b1", data)
    logged: list[str] = []
    builder._unpack(_agent_build("b1", hashlib.sha256(data).hexdigest()), tmp_path / "src",
                    logged.append)
    assert (tmp_path / "src" / "app" / "main.sh").read_bytes() == b"echo hi\n"
    assert logged and "unpacking the uploaded context" in logged[0]


def test_the_agent_refuses_a_damaged_or_escaping_archive(tmp_path: Path) -> None:
    builder = Builder(cast(DockerEngine, None), "reg:5000", tmp_path / "builds")
    data = _tar(("Dockerfile", DOCKERFILE))
    _sent(builder, "b2", data)
    with pytest.raises(DockyardError, match="arrived damaged"):
        builder._unpack(_agent_build("b2", "0" * 64), tmp_path / "a", lambda _: None)
    escaping = _tar(("Dockerfile", DOCKERFILE), _link("up", "../../etc"))
    _sent(builder, "b3", escaping)
    with pytest.raises(DockyardError, match="cannot be unpacked"):
        builder._unpack(_agent_build("b3", hashlib.sha256(escaping).hexdigest()),
                        tmp_path / "b", lambda _: None)
    with pytest.raises(DockyardError, match="did not arrive"):
        builder._unpack(_agent_build("b4", "0" * 64), tmp_path / "c", lambda _: None)
    with pytest.raises(InvalidRequest, match="not a build id"):
        builder.upload_dir("../../etc")
