"""The preflight's probe of the criu runc runs (adapters/criu.py `inet_dump_error`): a real
`criu dump --leave-running` of a process holding a listening TCP, a TCP and a UDP socket.

criu 4.1 fails it on kernels >= 6.16 (it reads SO_PASSCRED/SO_PASSSEC of every socket, which
those kernels refuse on inet sockets); scripts/criu-wrapper's criu 4.2 passes it. A criu that
fails the way 4.1 does is a small script here (the old tree is not built by scripts/setup.sh):
its error lines, and nothing else, reach the preflight.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from dockyard.adapters import criu
from tests.requirements import missing, requires_root

pytestmark = [pytest.mark.integration, requires_root()]

WRAPPER = Path(__file__).resolve().parents[2] / "scripts" / "criu-wrapper"


def test_the_wrappers_criu_dumps_tcp_and_udp_sockets_and_leaves_the_probe_running() -> None:
    built = subprocess.run([str(WRAPPER), "--build"], capture_output=True, text=True,
                           timeout=600)
    if built.returncode != 0:
        missing("the criu tree", "scripts/setup.sh (scripts/criu-wrapper --build)")
    before = set(os.listdir("/proc"))
    dirs = set(Path(tempfile.gettempdir()).glob("dockyard-criu-probe-*"))
    assert criu.inet_dump_error(str(WRAPPER)) == ""
    facts = criu.criu_facts(str(WRAPPER))
    assert facts.check_ok and facts.inet_sockets, facts
    # the probe process is gone (killed and reaped), its image directory too
    leaked = [p for p in set(os.listdir("/proc")) - before if p.isdigit()
              and "signal.pause()" in _cmdline(p)]
    assert not leaked
    assert set(Path(tempfile.gettempdir()).glob("dockyard-criu-probe-*")) <= dirs


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def test_a_criu_that_cannot_dump_inet_sockets_is_named_with_its_errors(tmp_path: Path) -> None:
    fake = tmp_path / "criu"
    fake.write_text(
        "#!/bin/sh\n"
        "# criu 4.1's answer on kernel >= 6.16: the log named by -o in the -D directory\n"
        'while [ $# -gt 0 ]; do case $1 in -D) dir=$2;; -o) log=$2;; esac; shift; done\n'
        'printf "%s\\n" "(00.05) Error (criu/util.c:1534): rlimit: Can'"'"'t setup '
        'RLIMIT_NOFILE for self" "(00.06) Error (criu/sockets.c:628): sockets: Can'"'"'t get '
        '1:16 opt: Operation not supported" "(00.07) Dumping FAILED." >"$dir/$log"\n'
        "exit 1\n")
    fake.chmod(0o755)
    error = criu.inet_dump_error(str(fake))
    assert error == ("(00.06) Error (criu/sockets.c:628): sockets: Can't get 1:16 opt: "
                     "Operation not supported")
