"""The dump through containerd (adapters/containerd_tasks.py): the container's containerd is
found from its own shim's command line, and a failure names the CRIU log so that the caller
quotes its error lines (criu.log_errors). The dump itself runs on the criu dev-cluster
(tests/e2e/live/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.adapters import containerd_tasks, criu
from dockyard.adapters.containerd_tasks import Shim, shim_of
from dockyard.errors import BackendError

CID = "82c971392e1acfed57cbcafabef5a03d723b8b565f459ef30e040d390180c0f1"


def _proc(root: Path, pid: int, ppid: int, argv: list[str], comm: str = "x y") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_the_shim_names_containerd_and_the_namespace(tmp_path: Path) -> None:
    sock = "/tmp/h2/docker/exec/containerd/containerd.sock"
    _proc(tmp_path, 900, 1, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id",
                             CID, "-address", sock])
    _proc(tmp_path, 901, 900, ["/usr/bin/supervisord", "-n"], comm="supervisord (x)")
    assert shim_of(901, CID, str(tmp_path)) == Shim(address=sock, namespace="moby", task=CID)


@pytest.mark.parametrize("parent_argv", [
    ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", "another", "-address",
     "/run/c.sock"],  # the shim of another container
    ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", CID],  # no address
    ["/usr/bin/dockerd", "-namespace", "moby", "-id", CID, "-address", "/run/c.sock"],
])
def test_no_shim_of_this_container_is_none(tmp_path: Path, parent_argv: list[str]) -> None:
    _proc(tmp_path, 900, 1, parent_argv)
    _proc(tmp_path, 901, 900, ["/bin/sh"])
    assert shim_of(901, CID, str(tmp_path)) is None


def test_a_gone_process_has_no_shim(tmp_path: Path) -> None:
    assert shim_of(4242, CID, str(tmp_path)) is None
    assert shim_of(0, CID, str(tmp_path)) is None


def test_a_failed_dump_names_its_criu_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """A `ctr` that fails as CRIU does: the message carries the log, whose error lines the
    agent quotes."""
    fake = tmp_path / "ctr"
    work = tmp_path / "criu-work" / "i1" / "cp1"
    fake.write_text("#!/bin/sh\n"
                    f"mkdir -p {work}; echo '(00.1) Error (criu/mount.c:1): no external "
                    f"for /proc/meminfo' > {work}/dump.log\n"
                    "echo 'ctr: criu failed: type NOTIFY errno 0' >&2; exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(containerd_tasks, "CTR", str(fake))
    with pytest.raises(BackendError) as info:
        containerd_tasks.checkpoint(Shim("/run/c.sock", "moby", CID), tmp_path / "img", work)
    assert "criu failed" in info.value.message
    assert "no external for /proc/meminfo" in criu.log_errors(info.value.message)
    assert (tmp_path / "img").is_dir()
