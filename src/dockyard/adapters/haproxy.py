"""HAProxy, the entrance's reverse proxy (Debian's `haproxy` package), run in master-worker mode.

    apply(config) ─▶ same bytes as the file, master alive ─▶ nothing
                  ─▶ `haproxy -c -f NEW` refuses it ─▶ InvalidRequest; the file and the
                     running proxy are untouched
                  ─▶ NEW renamed over DIR/haproxy.cfg ─▶ master alive ─▶ SIGUSR2: the master
                     re-reads the file, starts new workers, and the old ones finish the
                     requests they hold (graceful reload), then exit
                                                        ─▶ no master   ─▶ start it

Started as `haproxy -W -D -S DIR/master.sock -p DIR/haproxy.pid -f DIR/haproxy.cfg`: a
daemon, so a stopping or restarting agent leaves it (and its traffic) running; the next agent
finds the master again by the pid file (`running`: the pid is alive and its command line is
this haproxy with this configuration). `stop` sends SIGUSR1 (soft stop: the workers finish
their requests) and waits for the master to go.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from dockyard.errors import BackendError, InvalidRequest

HAPROXY = "haproxy"
CONFIG = "haproxy.cfg"
PIDFILE = "haproxy.pid"
SOCKET = "master.sock"
RESIGNAL_AFTER = 1.0  # seconds without a new worker before a reload's SIGUSR2 is sent again


class HAProxy:
    """`netns`: the named network namespace (/run/netns/NETNS) HAProxy is started and checked
    in (None: the caller's). Its connections to servers leave from there; a `bind` may name
    another namespace to listen in (HAProxy's `namespace` keyword)."""

    def __init__(self, directory: Path, binary: str = HAPROXY, netns: str | None = None) -> None:
        self.dir = directory
        self.binary = binary
        self.netns = netns
        self._master = 0  # the master last found: the same process while it re-executes

    def _command(self, *args: str) -> list[str]:
        # nsenter execs haproxy: the process's command line is haproxy's own (`_ours`)
        enter = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
        return [*enter, self.binary, *args]

    def in_its_netns(self, pid: int) -> bool:
        """Whether process `pid` runs in this proxy's namespace (the caller's when None)."""
        want = f"/run/netns/{self.netns}" if self.netns else "/proc/self/ns/net"
        try:
            mine, theirs = os.stat(want), os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG

    @property
    def pidfile(self) -> Path:
        return self.dir / PIDFILE

    def master_pid(self) -> int | None:
        """The running master of this directory's configuration: the pid file's, or (while a
        reloading master rewrites that file) the process found in /proc. A reload re-executes
        the master in place: while its command line reads empty, the master found before (or
        the pid file's) is still taken for it."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        for known in (pid, self._master):
            if known and (self._is_master(known) or _reexecuting(known)):
                self._master = known
                return known
        found = [p for p in _pids() if self._is_master(p)]
        self._master = min(found) if found else 0
        return self._master or None

    def _is_master(self, pid: int) -> bool:
        """`pid` is alive (not a zombie), runs haproxy with this configuration, and its parent
        does not (a worker's parent is the master). A reload re-executes the master in place:
        for a moment its command line is empty, and its workers must not look like masters
        then."""
        info = _process(pid)
        if info is None or not self._ours(info[1]):
            return False
        parent = _process(info[0])
        return parent is None or not (self._ours(parent[1]) or _reexecuting(info[0]))

    def _ours(self, cmdline: list[str]) -> bool:
        return (bool(cmdline) and Path(cmdline[0]).name == HAPROXY
                and str(self.config_path) in cmdline)

    def workers(self, master: int) -> set[int]:
        """The live worker processes (children) of `master`, old and new."""
        return {pid for pid in _pids()
                if (info := _process(pid)) is not None and info[0] == master}

    def check(self, config: str) -> None:
        """`haproxy -c` on `config`; InvalidRequest with its complaint when it refuses it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        candidate = self.dir / f"{CONFIG}.new"
        candidate.write_text(config)
        try:
            result = subprocess.run(self._command("-c", "-q", "-f", str(candidate)),
                                    capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            candidate.unlink(missing_ok=True)
            raise BackendError(f"cannot run {self.binary}: {exc}") from exc
        if result.returncode != 0:
            candidate.unlink(missing_ok=True)
            said = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise InvalidRequest("haproxy refuses the entrance configuration: "
                                 + " | ".join(said))

    def apply(self, config: str) -> bool:
        """Run HAProxy with `config`: checked first, then started or reloaded; False when it
        already runs exactly this configuration (nothing done)."""
        pid = self.master_pid()
        current = self.config_path.read_text() if self.config_path.exists() else None
        if pid is not None and current == config:
            return False
        self.check(config)
        os.replace(self.dir / f"{CONFIG}.new", self.config_path)
        if pid is None:
            self._start()
        else:
            self._reload(pid)
        return True

    def _reload(self, master: int, timeout: float = 15.0) -> None:
        """SIGUSR2 (graceful: old workers finish their requests), then wait for the new
        worker: a master signalled again in the middle of a reload could miss it."""
        before = self.workers(master)
        os.kill(master, signal.SIGUSR2)
        signalled = time.monotonic()
        deadline = signalled + timeout
        while not self.workers(master) - before:
            if _process(master) is None:  # (the master re-executes in place: same pid)
                raise BackendError("haproxy's master exited during a reload")
            now = time.monotonic()
            if now > deadline:
                raise BackendError("haproxy did not start a worker with the new "
                                   f"configuration within {timeout:.0f}s")
            if now - signalled > RESIGNAL_AFTER:
                # a master still starting up (its first worker just forked) or just
                # re-executed catches SIGUSR2 and does nothing with it (2 of 150 reloads
                # right after a start): ask again
                os.kill(master, signal.SIGUSR2)
                signalled = now
            time.sleep(0.02)

    def _start(self) -> None:
        argv = self._command("-W", "-D", "-S", str(self.dir / SOCKET), "-p", str(self.pidfile),
                             "-f", str(self.config_path))
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                    stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"cannot start {self.binary}: {exc}") from exc
        master = self.master_pid()
        if result.returncode != 0 or master is None:
            raise BackendError(f"haproxy did not start: {result.stderr.strip()[-500:]}")
        deadline = time.monotonic() + 15
        while not self.workers(master):  # its worker holds the listener
            if time.monotonic() > deadline:
                raise BackendError("haproxy started no worker")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Soft stop (requests in flight finish), SIGTERM after `timeout`, SIGKILL of the
        master and its workers after another; no-op when nothing runs."""
        pid = self.master_pid()
        if pid is None:
            return
        family = {pid} | self.workers(pid)
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGKILL):
            for member in sorted(family) if sig == signal.SIGKILL else [pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, sig)
            deadline = time.monotonic() + timeout
            while any(_process(p) is not None for p in family):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                break
        self.pidfile.unlink(missing_ok=True)


def _reexecuting(pid: int) -> bool:
    """`pid` is an haproxy whose command line reads empty: a master re-executing itself for a
    reload (a kernel thread also has none, but no haproxy executable)."""
    info = _process(pid)
    if info is None or info[1]:
        return False
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name == HAPROXY
    except OSError:
        return False


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _process(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, command line) of a live process; None for a gone one or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
