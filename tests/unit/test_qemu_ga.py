"""The guest-agent client (adapters/qemu_ga.py) against a fake qemu-ga on a real unix socket:
the protocol seam QEMU's chardev gives the host. The fake answers like qemu-ga 7.2 does
(0xFF resets its parser with an error reply; guest-sync-delimited answers 0xFF first)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters import qemu_ga
from dockyard.errors import TemporaryError

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class FakeGuestAgent:
    """Serves one client at a time, as QEMU's chardev does; `handler` answers commands."""

    def __init__(self, path: Path, handler: Handler, stale: bytes = b"") -> None:
        self.path = path
        self.handler = handler
        self.stale = stale  # sent at each connect, before anything was asked
        self.requests: list[dict[str, Any]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.stale)
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        while chunk := conn.recv(4096):
            buffer += chunk
            if b"\xff" in buffer:  # the parser resets, and says so
                buffer = buffer.split(b"\xff")[-1]
                conn.sendall(b'{"error": {"class": "GenericError", "desc": "JSON parse"}}\n')
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                request = json.loads(line)
                self.requests.append(request)
                if request["execute"] == "guest-sync-delimited":
                    reply = {"return": request["arguments"]["id"]}
                    conn.sendall(b"\xff" + json.dumps(reply).encode() + b"\n")
                    continue
                answer = self.handler(request)
                if answer is not None:
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "qga.sock"


@pytest.fixture
def fakes() -> Iterator[list[FakeGuestAgent]]:
    made: list[FakeGuestAgent] = []
    yield made
    for fake in made:
        fake.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _shell(polls_before_exit: int, status: dict[str, Any]) -> Handler:
    """A guest whose process runs for `polls_before_exit` status calls, then ends so."""
    left = [polls_before_exit]

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request["execute"] == "guest-exec":
            return {"return": {"pid": 4242}}
        assert request == {"execute": "guest-exec-status", "arguments": {"pid": 4242}}
        if left[0] > 0:
            left[0] -= 1
            return {"return": {"exited": False}}
        return {"return": {"exited": True, **status}}
    return handle


def test_exec_returns_output_and_exit_code(sock: Path, fakes: list[FakeGuestAgent]) -> None:
    fake = FakeGuestAgent(sock, _shell(2, {"exitcode": 3, "out-data": _b64(b"vm1\n"),
                                           "err-data": _b64(b"warn\n")}))
    fakes.append(fake)
    done = qemu_ga.guest_exec(sock, "vm1", ["hostname", "-s"], {"A": "1"}, timeout=2)
    assert done == qemu_ga.GuestExit(3, b"vm1\n", b"warn\n")
    started = next(r for r in fake.requests if r["execute"] == "guest-exec")
    assert started["arguments"] == {"path": "hostname", "arg": ["-s"], "capture-output": True,
                                    "env": ["A=1"]}
    assert sum(r["execute"] == "guest-exec-status" for r in fake.requests) == 3


def test_a_stale_reply_of_an_earlier_client_is_dropped(sock: Path,
                                                       fakes: list[FakeGuestAgent]) -> None:
    stale = b'{"return": {"pid": 99}}\n{"return": {"exited": true, "exitcode": 9}}\n'
    fakes.append(FakeGuestAgent(sock, _shell(0, {"exitcode": 0}), stale=stale))
    assert qemu_ga.guest_exec(sock, "vm1", ["true"], {}, timeout=2).exit_code == 0


def test_killed_by_a_signal_is_128_plus_it(sock: Path, fakes: list[FakeGuestAgent]) -> None:
    fakes.append(FakeGuestAgent(sock, _shell(0, {"signal": 9})))
    assert qemu_ga.guest_exec(sock, "vm1", ["sleep", "9"], {}, timeout=2).exit_code == 137


def test_a_command_the_guest_cannot_run_is_127_with_why(sock: Path,
                                                        fakes: list[FakeGuestAgent]) -> None:
    def refuse(request: dict[str, Any]) -> dict[str, Any]:
        desc = 'Failed to execute child process "nope" (No such file or directory)'
        return {"error": {"class": "GenericError", "desc": desc}}
    fakes.append(FakeGuestAgent(sock, refuse))
    done = qemu_ga.guest_exec(sock, "vm1", ["nope"], {}, timeout=2)
    assert done.exit_code == 127 and b"No such file or directory" in done.stderr


def test_a_silent_guest_agent_is_a_temporary_error_not_a_hang(
        sock: Path, fakes: list[FakeGuestAgent]) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # QEMU, no qemu-ga behind
    listener.bind(str(sock))
    listener.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryError, match="does not answer .*still booting"):
            qemu_ga.guest_exec(sock, "vm1", ["true"], {}, timeout=0.3)
        assert time.monotonic() - started < 2
    finally:
        listener.close()


def test_no_socket_is_a_temporary_error(sock: Path) -> None:
    with pytest.raises(TemporaryError, match="is the VM running"):
        qemu_ga.exchange(sock, "vm1", "guest-ping", timeout=0.3)


def test_a_guest_agent_that_stops_answering_mid_exec(sock: Path,
                                                     fakes: list[FakeGuestAgent]) -> None:
    def once(request: dict[str, Any]) -> dict[str, Any] | None:
        return {"return": {"pid": 1}} if request["execute"] == "guest-exec" else None
    fakes.append(FakeGuestAgent(sock, once))
    with pytest.raises(TemporaryError, match="guest-exec-status within"):
        qemu_ga.guest_exec(sock, "vm1", ["sleep", "60"], {}, timeout=0.3)
