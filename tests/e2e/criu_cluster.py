"""A `dev-cluster up --criu` for the live-migration modules (tests/e2e/live/), and the checks
their tests share: a counter loop inside an instance, a container's pid and cgroup files on
its host.

Why a cluster of its own and not the session one: its daemons run --experimental with criu 4.2
(scripts/criu-wrapper) on their PATH, and a test restarts a host's dockerd *without* checkpoint
support; the session cluster stays a plain production-like setup. Every skip prints its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dockyard.devcluster import state
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster
from tests.requirements import message, missing

WRAPPER = Path(__file__).resolve().parents[2] / "scripts" / "criu-wrapper"
# one line per 0.1 s; `sleep 0.1` where busybox's usleep is missing (Debian)
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i >> /counter; "
           "usleep 100000 2>/dev/null || sleep 0.1; done")


def _skip(what: str, step: str) -> None:
    print(f"SKIP live migration: {message(what, step)}", file=sys.stderr, flush=True)
    missing(what, step)


def criu_cluster() -> Iterator[DevCluster]:
    """The body of the live package's fixture (live/conftest.py): 3 hosts with criu; the
    modules add their networks. A missing part skips, or fails under CI / make test
    (tests/requirements.py)."""
    if os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None:
        _skip("root or Open vSwitch for the dev-cluster", "scripts/setup.sh, run as root")
    build = subprocess.run([str(WRAPPER), "--build"], capture_output=True, text=True,
                           timeout=600)
    if build.returncode != 0:
        _skip(f"the criu 4.2 tree ({build.stderr.strip()[-300:]})",
              "scripts/setup.sh (scripts/criu-wrapper --build)")
    check = subprocess.run([str(WRAPPER), "check"], capture_output=True, text=True,
                           timeout=120)
    if check.returncode != 0:
        _skip(f"a kernel `criu check` accepts ({(check.stderr or check.stdout)[-300:]})",
              "a kernel with CRIU support on the test machine")
    base = Path(tempfile.mkdtemp(prefix="dockyard-live-"))
    env = {**os.environ, "DOCKYARD_CONFIG": str(base / "config.json"), "COLUMNS": "200"}
    env.pop("DOCKYARD_URL", None)
    env.pop("DOCKYARD_TOKEN", None)
    dc = DevCluster(home=base / "home", env=env)
    try:
        dc.ok("dev-cluster", "up", "--criu", "--hosts", "3", "--home", str(dc.home),
              "--heartbeat-timeout", "6", "--resync-interval", "10")
        yield dc
    finally:
        dc.cli("dev-cluster", "down", "--home", str(dc.home))
        shutil.rmtree(base, ignore_errors=True)


def sh(dc: DevCluster, name: str, script: str) -> str:
    return dc.ok("exec", name, "--", "sh", "-c", script)


def background(dc: DevCluster, name: str, script: str) -> None:
    """A process that outlives the exec (re-parented to the container's init)."""
    sh(dc, name, f"sh -c '{script}' </dev/null >/dev/null 2>&1 &")


def counts(dc: DevCluster, name: str) -> list[int]:
    return [int(line) for line in sh(dc, name, "cat /counter").split() if line.isdigit()]


def assert_counting_on(dc: DevCluster, name: str, more_than: int) -> list[int]:
    """The counter's lines are 1..n without a restart or a skip, and it goes on past
    `more_than` lines (the same processes keep running)."""
    def grown() -> bool:
        got = counts(dc, name)
        assert got == list(range(1, len(got) + 1)), f"{name}: the counter restarted/skipped"
        return len(got) > more_than
    hostctl.until(grown, f"{name} counting past {more_than}", timeout=30)
    return counts(dc, name)


def show(dc: DevCluster, name: str) -> dict[str, object]:
    shown: dict[str, object] = json.loads(dc.ok("show", name, "--json"))
    return shown


def container_pid(dc: DevCluster, host: str, container: str) -> int:
    return int(hostctl.docker(dc.home, host, "inspect", "-f", "{{.State.Pid}}",
                              container).strip())


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """A cgroup v1 file of the process's own cgroup, as the host sees it."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            base = Path("/sys/fs/cgroup") / controllers
            if not base.exists():
                base = Path("/sys/fs/cgroup") / controller
            return (base / path.lstrip("/") / name).read_text().strip()
    raise AssertionError(f"no {controller} cgroup for pid {pid}")


def host_netns(dc: DevCluster, host: str) -> str:
    st = state.load(dc.home)
    assert st is not None
    return st.host(host).netns
