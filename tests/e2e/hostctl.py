"""Take a dev-cluster host's daemons down and bring them back, by the PIDs in the state file.

Every start happens in a short-lived child process, which owns the Popen (the daemon outlives
it, detached), and the new PID goes back into the state file so `dev-cluster down` finds it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from dockyard.devcluster import plumbing, state
from dockyard.store.db import Database
from dockyard.store.tables import HostRow

ROOT = str(Path(__file__).resolve().parents[2])  # tests.faultrun imports from here


@dataclass
class AgentCommand:
    argv: list[str]  # as the agent was started (inside its netns)
    token: str


def until(check: Any, what: str, timeout: float = 120.0) -> None:
    """Poll `check` (an AssertionError counts as not yet) until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except AssertionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def listed(out: str) -> list[dict[str, Any]]:
    """The rows of a `dockyard … list --json` output (a list, or a page with `items`)."""
    got = json.loads(out)
    return list(got["items"] if isinstance(got, dict) else got)


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while plumbing.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not plumbing.alive(pid), f"pid {pid} still alive"


def stop_agent(home: Path, name: str, pid: int | None = None) -> AgentCommand:
    """SIGKILL the host's agent (as a crash would); returns how to start it again."""
    st = state.load(home)
    assert st is not None
    pid = pid or st.host(name).pids["agent"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    token = next(e.split(b"=", 1)[1].decode() for e in environ
                 if e.startswith(b"DOCKYARD_TOKEN="))
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    return AgentCommand(argv, token)


def start_agent(home: Path, name: str, cmd: AgentCommand,
                fault: tuple[str, Path] | None = None) -> int:
    """`fault`: (POINT or pause:POINT, MARKER) armed through tests/faultrun.py."""
    st = state.load(home)
    assert st is not None
    host = st.host(name)
    argv = cmd.argv
    if fault is not None:
        module = argv.index("dockyard")  # python -m dockyard agent …
        argv = [*argv[:module - 1], "-m", "tests.faultrun", fault[0], str(fault[1]), "--",
                *argv[module + 1:]]
    code = ("import json, sys; from pathlib import Path; "
            "from dockyard.devcluster import plumbing as pl; "
            "a = json.loads(sys.argv[1]); "
            "print(pl.spawn(pl.in_netns(a['netns'], *a['argv']), Path(a['log']), "
            "{'DOCKYARD_TOKEN': a['token'], 'PYTHONPATH': a['root']}))")
    arg = json.dumps({"netns": host.netns, "argv": argv, "token": cmd.token, "root": ROOT,
                      "log": str(Path(host.root) / "agent.log")})
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True,
                         check=True, timeout=60)
    host.pids["agent"] = int(out.stdout.strip().splitlines()[-1])
    st.save()
    return host.pids["agent"]


def stop_dockerd(home: Path, name: str) -> None:
    """SIGTERM: with --live-restore its containers keep running (a daemon crash, not a
    power cut)."""
    st = state.load(home)
    assert st is not None
    pid = st.host(name).pids["dockerd"]
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid, timeout=60)


def start_dockerd(home: Path, name: str, criu_bin: str | None = None) -> int:
    """`criu_bin` as plumbing.start_dockerd: "" without checkpoint support, a directory for a
    criu of its own, None as the daemon's last start (the cluster's own set-up)."""
    st = state.load(home)
    assert st is not None
    host = st.host(name)
    code = ("import sys; from pathlib import Path; from dockyard.devcluster import plumbing; "
            "print(plumbing.start_dockerd(sys.argv[1], Path(sys.argv[2]), sys.argv[3], "
            "None if sys.argv[4] == '-' else sys.argv[4]))")
    out = subprocess.run([sys.executable, "-c", code, host.netns,
                          str(Path(host.root) / "docker"), host.cgroup_parent,
                          "-" if criu_bin is None else criu_bin],
                         capture_output=True, text=True, check=True, timeout=180)
    host.pids["dockerd"] = int(out.stdout.strip().splitlines()[-1])
    st.save()
    return host.pids["dockerd"]


def docker(home: Path, name: str, *args: str) -> str:
    st = state.load(home)
    assert st is not None
    sock = Path(st.host(name).root) / "docker" / "docker.sock"
    return subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def copies(home: Path, name: str, instance_id: str) -> list[tuple[str, str]]:
    """(container name, state) of every container of this instance on the host."""
    out = docker(home, name, "ps", "-a", "--filter", f"label=dockyard.instance={instance_id}",
                 "--format", "{{.Names}} {{.State}}")
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if line]  # type: ignore[misc]



def stop_server(home: Path) -> list[str]:
    """SIGTERM the dev-cluster's server; returns its argv, to start it again."""
    st = state.load(home)
    assert st is not None
    argv = _argv(st.server_pid)
    os.kill(st.server_pid, signal.SIGTERM)
    wait_gone(st.server_pid)
    return argv


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def start_server(home: Path, argv: list[str], fault: tuple[str, Path] | None = None) -> int:
    """The server again (with `fault` armed through tests/faultrun.py), once it answers."""
    st = state.load(home)
    assert st is not None
    if fault is not None:
        module = argv.index("dockyard")  # python -m dockyard server …
        argv = [*argv[:module - 1], "-m", "tests.faultrun", fault[0], str(fault[1]), "--",
                *argv[module + 1:]]
    code = ("import json, sys; from pathlib import Path; "
            "from dockyard.devcluster import plumbing as pl; "
            "a = json.loads(sys.argv[1]); "
            "print(pl.spawn(a['argv'], Path(a['log']), {'PYTHONPATH': a['root']}))")
    arg = json.dumps({"argv": argv, "root": ROOT, "log": str(home / "server.log")})
    started = datetime.now(UTC)
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True,
                         check=True, timeout=60)
    st.server_pid = int(out.stdout.strip().splitlines()[-1])
    st.save()
    try:
        plumbing.wait_for(lambda: httpx.get(f"{st.url}/healthz", timeout=2).status_code == 200,
                          "server", st.server_pid, home / "server.log")
    except Exception as exc:
        tail = (home / "server.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"the server did not start again: {exc}\n{tail}") from exc
    # and every host heard from by it: a server down for longer than the heartbeat timeout
    # finds every host `down` until its agent calls again (each retries every second), and a
    # launch at once was refused "host is down" (CI run 11a)
    names = [h.name for h in st.hosts]
    db = Database(f"sqlite:///{home / 'dockyard.db'}")  # one for the whole wait
    try:
        plumbing.wait_for(lambda: heard_since(db, names, started), "every host's agent back",
                          st.server_pid, home / "server.log")
    finally:
        db.close()
    return st.server_pid


def heard_since(db: Database, names: list[str], when: datetime) -> bool:
    """Whether the server has written the heartbeat of every host in `names` at `when` or
    later (read from its store)."""
    with db.read() as sess:
        beats = dict(sess.execute(select(HostRow.name, HostRow.last_heartbeat)
                                  .where(HostRow.name.in_(names))).tuples().all())
    return len(beats) == len(names) and all(
        b is not None and (b if b.tzinfo else b.replace(tzinfo=UTC)) >= when
        for b in beats.values())


class FaultServer:
    """The dev-cluster's server as the fault tests run it: started with one fault point
    armed, killed there by the test's action, then started again at once armed for the point
    the next case wants (`then`): one server start per case, not a stop, an armed start and an
    unarmed start. Recovery and the case's own checks run in that next-armed server: neither
    passes a migration's fault points (only a migration's own steps do). `disarm` at the end."""

    def __init__(self, home: Path, argv: list[str]) -> None:
        self.home, self.argv = home, argv
        self.armed: str | None = None

    def _marker(self, point: str) -> Path:
        return self.home / f"fault-{point}.marker"

    def _start(self, point: str | None) -> int:
        if point is not None:
            self._marker(point).unlink(missing_ok=True)
        self.armed = point
        return start_server(self.home, self.argv,
                            fault=None if point is None else (point, self._marker(point)))

    def arm(self, point: str | None) -> None:
        """The server running with `point` armed (None: unarmed), restarted only if not."""
        if self.armed != point or not plumbing.alive(server_pid(self.home)):
            if plumbing.alive(server_pid(self.home)):
                stop_server(self.home)
            self._start(point)

    def kill_at(self, point: str, action: Any, then: str | None) -> None:
        """Run `action()` (which drives the server to `point`), check that the server died
        there, then start it again armed for `then` (also when the action or check fails)."""
        self.arm(point)
        pid = server_pid(self.home)
        try:
            action()
            wait_gone(pid, timeout=120)
            assert self._marker(point).read_text().split() == [point]
        finally:
            if plumbing.alive(pid):
                stop_server(self.home)
            self._start(then)

    def disarm(self) -> None:
        self.arm(None)


def server_pid(home: Path) -> int:
    st = state.load(home)
    assert st is not None
    return st.server_pid


def volumes(home: Path, name: str) -> list[str]:
    return docker(home, name, "volume", "ls", "-q").split()
