"""QEMU's guest agent (`qemu-ga` inside a VM) over the VM's virtio-serial port, which QEMU
exposes on the host as a unix socket (`qga.sock` in the run directory, adapters/qemu.py).

Protocol: JSON objects, one a line, both ways, no greeting. The port outlives clients: a
client that left mid-exchange may leave a reply the next one would read as its own, and
half a request in the agent's parser. So every connection starts by sending 0xFF (the agent
resets its parser on it) and `guest-sync-delimited` with a fresh id; the agent answers 0xFF
and then `{"return": id}`, and everything before that is dropped.

QEMU's chardev serves one client at a time (others wait in the listen backlog); the lock per
socket keeps this process's threads from queueing behind each other there. Every read has a
deadline: a guest whose agent does not run (still booting, or no qemu-ga in the image) is a
TemporaryError after `timeout` seconds, never a hang.

    guest_exec: guest-exec (path searched in the guest's PATH, output captured)
                → guest-exec-status polled, a new connection each time, until `exited`
"""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import BackendError, TemporaryError

GA_TIMEOUT = 5.0  # seconds for the guest agent to answer one exchange
EXEC_LIMIT = 3600.0  # the longest a command may run (the server's own exec limit)
DELIMITER = b"\xff"
NOT_FOUND_CODE = 127  # what a shell answers for a command it cannot run

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class GuestExit:
    exit_code: int
    stdout: bytes
    stderr: bytes


class GuestAgentError(BackendError):
    """The guest agent answered a command with an error (its `desc` is the message)."""


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


class GuestAgent:
    """One connection to a guest agent, synchronised (see the module docstring)."""

    def __init__(self, sock: socket.socket, name: str, timeout: float) -> None:
        self.sock = sock
        self.name = name
        self.timeout = timeout
        self.buffer = b""

    def _silent(self, what: str) -> TemporaryError:
        return TemporaryError(f"the guest agent of VM {self.name} does not answer ({what} "
                              f"within {self.timeout:g} s): still booting, or no qemu-ga "
                              f"in its image", delay=1.0)

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the guest agent's socket closed")
        self.buffer += chunk

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self.buffer:
            self._fill(deadline)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def sync(self) -> None:
        token = random.randrange(1, 2**31)
        request = {"execute": "guest-sync-delimited", "arguments": {"id": token}}
        deadline = time.monotonic() + self.timeout
        try:
            self.sock.sendall(DELIMITER + json.dumps(request).encode() + b"\n")
            while DELIMITER not in self.buffer:
                self._fill(deadline)
            self.buffer = self.buffer.split(DELIMITER)[-1]  # stale replies before it: dropped
            while True:
                reply = _parse(self._line(deadline))
                if reply is not None and reply.get("return") == token:
                    return
        except (TimeoutError, OSError) as exc:
            raise self._silent("guest-sync") from exc

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        deadline = time.monotonic() + self.timeout
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
            while (reply := _parse(self._line(deadline))) is None:
                continue
        except (TimeoutError, OSError) as exc:
            raise self._silent(command) from exc
        if "error" in reply:
            desc = (reply["error"] or {}).get("desc", reply["error"])
            raise GuestAgentError(f"{command} in VM {self.name}: {desc}")
        return reply.get("return")


def _parse(line: bytes) -> dict[str, Any] | None:
    """A reply object; None for what is not one (a blank line, a stray delimiter)."""
    try:
        value = json.loads(line.strip(DELIMITER + b" \r\t"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def exchange(path: Path, name: str, command: str, arguments: dict[str, Any] | None = None,
             timeout: float = GA_TIMEOUT) -> Any:
    """Connect, synchronise, run one command, disconnect."""
    with _lock(path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
            except OSError as exc:
                raise TemporaryError(f"the guest agent socket of VM {name} is not there "
                                     f"({exc.strerror}): is the VM running?",
                                     delay=1.0) from exc
            agent = GuestAgent(sock, name, timeout)
            agent.sync()
            return agent.execute(command, arguments)
        finally:
            sock.close()


def guest_exec(path: Path, name: str, argv: list[str], env: dict[str, str],
               timeout: float = GA_TIMEOUT, limit: float = EXEC_LIMIT) -> GuestExit:
    """Run `argv` in the guest and wait for it: its exit code (128 + N when killed by signal
    N; 127 when it could not be started, as a shell says) and its captured output."""
    arguments: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": True}
    if env:
        arguments["env"] = [f"{k}={v}" for k, v in env.items()]
    try:
        started = exchange(path, name, "guest-exec", arguments, timeout)
    except GuestAgentError as exc:  # e.g. no such file: the process never ran
        return GuestExit(NOT_FOUND_CODE, b"", f"dockyard: {exc.message}\n".encode())
    pid = int(started["pid"])
    deadline = time.monotonic() + limit
    pause = 0.02
    while True:
        status = exchange(path, name, "guest-exec-status", {"pid": pid}, timeout)
        if status.get("exited"):
            return _exit(status)
        if time.monotonic() > deadline:
            raise BackendError(f"exec in VM {name}: still running after {limit:g} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _exit(status: dict[str, Any]) -> GuestExit:
    if status.get("exitcode") is not None:
        code = int(status["exitcode"])
    else:
        code = 128 + int(status.get("signal") or 0)
    return GuestExit(code, base64.b64decode(status.get("out-data") or ""),
                     base64.b64decode(status.get("err-data") or ""))
