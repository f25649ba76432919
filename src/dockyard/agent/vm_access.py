"""What the agent API offers of a running VM (`type: vm`), beside what it offers of containers:

    exec     → the QEMU guest agent (guest-exec, then guest-exec-status until it exits):
               stdout, stderr and the exit code, as a container exec answers
    logs     → the serial console's log, HOME/vms/<id>/serial.log (QEMU writes every byte of
               ttyS0 there, connected or not), the last `tail` lines, then followed
    console  → the serial console itself (console.sock), a byte stream both ways: the
               session `agent/console.py` pumps, like an attached docker exec

A VM is this host's when its run directory exists (agent/vm.py owns the directory).
`exec -it` has no guest-agent equivalent (guest-exec has no terminal): refused with a 422
that names `dockyard console`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

from dockyard.adapters import qemu, qemu_ga
from dockyard.errors import Conflict, InvalidRequest
from dockyard.model.instance import ExecRequest, ExecResult

FOLLOW_POLL = 0.2  # seconds between looks at a followed serial log
CHUNK = 65536

NO_TTY_EXEC = ("this instance is a VM: `dockyard exec -i/-t` needs a container; use "
               "`dockyard console NAME` (the serial console) or ssh, or exec without -i/-t")


class VmAccess:
    def __init__(self, root: Path) -> None:
        self.root = root  # HOME/vms, as in agent/vm.py

    def owns(self, instance_id: str) -> bool:
        return "/" not in instance_id and not instance_id.startswith(".") \
            and (self.root / instance_id).is_dir()

    def _running(self, instance_id: str) -> Path:
        run = self.root / instance_id
        if qemu.running_pid(run) is None:
            raise Conflict(f"VM {instance_id} is not running on this host")
        return run

    def exec(self, instance_id: str, req: ExecRequest) -> ExecResult:
        if req.user not in (None, "", "root", "0"):
            raise InvalidRequest("exec in a VM runs as root (the guest agent's user): "
                                 "--user is not supported")
        argv = list(req.command)
        if req.workdir:  # guest-exec has no working directory: the guest's shell changes it
            argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', req.workdir, *argv]
        run = self._running(instance_id)
        done = qemu_ga.guest_exec(qemu.guest_agent_socket(run), instance_id, argv, req.env)
        return ExecResult(exit_code=done.exit_code,
                          stdout=done.stdout.decode(errors="replace"),
                          stderr=done.stderr.decode(errors="replace"))

    def logs(self, instance_id: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        path = qemu.serial_log(self.root / instance_id)
        if not path.exists():
            raise Conflict(f"VM {instance_id} has no serial log yet")
        return serial_log(path, follow, tail, lambda: (self.root / instance_id).is_dir())

    def console(self, instance_id: str) -> SerialSession:
        run = self._running(instance_id)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(qemu_ga.GA_TIMEOUT)
        try:
            sock.connect(str(qemu.console_socket(run)))
        except OSError as exc:
            sock.close()
            raise Conflict(f"the serial console of VM {instance_id} is not there "
                           f"({exc.strerror}); a VM started before consoles existed gets "
                           f"one at its next start") from exc
        sock.settimeout(None)
        return SerialSession(sock)


def _last_lines(data: bytes, tail: int | None) -> bytes:
    if tail is None:
        return data
    if tail <= 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-tail:])


def serial_log(path: Path, follow: bool, tail: int | None,
               alive: Callable[[], bool]) -> Iterator[bytes]:
    """The log's last `tail` lines (all: None), then, with `follow`, what is appended, until
    the VM's directory goes (it was deleted) or the reader hangs up."""
    with path.open("rb") as f:
        first = _last_lines(f.read(), tail)
        if first:
            yield first
        while follow:
            chunk = f.read(CHUNK)
            if chunk:
                yield chunk
                continue
            if not alive():
                return
            time.sleep(FOLLOW_POLL)


class SerialSession:
    """The serial console as `agent/console.py` pumps a session: raw bytes both ways, no
    terminal size (a serial line has none), no exit code (it ends when either side hangs up).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            return  # the console went away: recv() ends the session

    def recv(self) -> bytes:
        try:
            return self.sock.recv(CHUNK)
        except OSError:
            return b""

    def resize(self, cols: int, rows: int) -> None:
        return None

    def close_stdin(self) -> None:
        """The client left (Ctrl-] or its stdin's end): a serial line has no end of input,
        so the session ends here; recv() returns b"" and the client gets exit code 0."""
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def exit_code(self) -> int:
        return 0

    def hangup(self) -> None:
        return None

    def close(self) -> None:
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
        self.sock.close()
