"""scripts/detach starts the set-up's daemons holding none of the caller's open files: a lock
the caller held (`flock -x /tmp/dockyard-heavy.lock scripts/setup.sh`) ends with the caller
instead of living on in dockerd, lxcfs or PostgreSQL (plain `setsid` kept it)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

DETACH = str(Path(__file__).resolve().parents[2] / "scripts" / "detach")


def _wait_for_exec(pid: int, comm: str) -> None:
    """Until `pid` runs `comm` (detach and setsid exec in the same process)."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/comm").read_text().strip() != comm:
        assert time.monotonic() < deadline, f"pid {pid} never ran {comm}"
        time.sleep(0.01)


def _locked_by_a_daemon(tmp_path: Path, launcher: list[str]) -> bool:
    """Hold an exclusive flock, start a long-lived child through `launcher` with the lock's
    descriptor inherited, let go of ours: is the file still locked?"""
    path = tmp_path / "heavy.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = subprocess.Popen([*launcher, "sleep", "60"], pass_fds=(fd,),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        os.close(fd)
        _wait_for_exec(child.pid, "sleep")
        probe = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(probe)
        return False
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_detached_daemon_keeps_no_lock_of_its_caller(tmp_path: Path) -> None:
    assert not _locked_by_a_daemon(tmp_path, [DETACH])


def test_plain_setsid_keeps_it(tmp_path: Path) -> None:
    """The control: what the scripts did before."""
    assert _locked_by_a_daemon(tmp_path, ["setsid"])


def test_detach_needs_a_command() -> None:
    proc = subprocess.run([DETACH], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_the_standard_streams_stay(stream: str) -> None:
    script = "echo hello" + (" >&2" if stream == "stderr" else "")
    proc = subprocess.run([DETACH, "sh", "-c", script], capture_output=True, text=True,
                          timeout=10)
    assert getattr(proc, stream) == "hello\n"
