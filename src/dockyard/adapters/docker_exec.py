"""Commands in containers: `exec` (run to the end, output collected) and `attach_exec`
(stdin attached, an optional tty: the console's interactive session).

Part of the `DockerEngine` facade (`docker_engine`). `attach_exec` hands out an
`ExecSession`: an exec with stdin attached over the hijacked dockerd connection (raw bytes
with a tty; 8-byte-header frames without one, which the session unwraps, merging stdout and
stderr). Its methods block; callers give it its own thread.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from contextlib import suppress
from typing import Any

from dockyard.adapters.docker_sdk import hijack_exec_start, hijacked_stream, translate
from dockyard.errors import BackendError
from dockyard.model.instance import ExecResult

__all__ = ["Exec", "ExecSession"]


class ExecSession:
    """One attached exec: `send`/`recv` raw bytes, `resize` its tty, `close_stdin`, `close`.

    `recv` returns b"" once the process closed its output; `exit_code` then waits briefly for
    dockerd to record the exit (the stream ends a moment before inspect says so).
    """

    def __init__(self, api: Any, exec_id: str, response: Any, tty: bool, what: str) -> None:
        self._api = api
        self._id = exec_id
        self._response = response  # requests.Response of the hijacked POST /exec/ID/start
        # Read through http.client's buffer: output that arrived together with the 101
        # answer sits there, not in the socket (docker-py's socket=True loses it).
        self._reader, self._sock = hijacked_stream(response)
        self._sock.settimeout(None)  # an idle console is not a timeout
        self._tty = tty
        self._what = what

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:  # the process is gone; its exit code tells the story
            raise BackendError(f"{self._what}: stdin closed: {exc}") from exc

    def recv(self) -> bytes:
        """The next chunk of output, or b"" at the end."""
        try:
            if self._tty:
                return bytes(self._reader.read1(65536))
            while True:  # without a tty dockerd frames stdout/stderr: skip empty frames
                header = self._reader.read(8)
                if len(header) < 8:
                    return b""
                _, length = struct.unpack(">BxxxL", header)
                if length:
                    return bytes(self._reader.read(length))
        except (OSError, ValueError):  # closed under us (close() from another thread)
            return b""

    def resize(self, cols: int, rows: int) -> None:
        if self._tty:
            with translate(f"resize {self._what}"):
                self._api.exec_resize(self._id, height=rows, width=cols)

    def close_stdin(self) -> None:
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def hangup(self) -> None:
        """SIGHUP a still-running tty process, as a terminal hanging up would: dockerd keeps
        a tty exec alive after its client left (without a tty, stdin's end does the job)."""
        if not self._tty:
            return
        with translate(f"inspect {self._what}"):
            info = self._api.exec_inspect(self._id)
        if info.get("Running") and info.get("Pid"):
            with suppress(ProcessLookupError):
                os.kill(int(info["Pid"]), signal.SIGHUP)

    def exit_code(self, wait: float = 5.0) -> int:
        """The process's exit code (-1 if dockerd does not know it within `wait`)."""
        deadline = time.monotonic() + wait
        while True:
            with translate(f"inspect {self._what}"):
                info = self._api.exec_inspect(self._id)
            code = info.get("ExitCode")
            if not info.get("Running") and code is not None:
                return int(code)
            if time.monotonic() >= deadline:
                return -1
            time.sleep(0.05)

    def close(self) -> None:
        """Idempotent; unblocks a `recv` waiting in another thread first."""
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            self._response.close()
            self._sock.close()


class Exec:
    """The exec calls of `DockerEngine` (`api`: the SDK's low-level APIClient)."""

    api: Any

    def exec(self, name: str, command: list[str], env: dict[str, str],
             workdir: str | None, user: str | None) -> ExecResult:
        with translate(f"exec in {name}"):
            handle = self.api.exec_create(name, command, stdout=True, stderr=True,
                                          environment=[f"{k}={v}" for k, v in env.items()],
                                          workdir=workdir, user=user or "")
            out, err = self.api.exec_start(handle["Id"], demux=True)
            code = self.api.exec_inspect(handle["Id"]).get("ExitCode")
        return ExecResult(exit_code=int(code if code is not None else -1),
                          stdout=(out or b"").decode(errors="replace"),
                          stderr=(err or b"").decode(errors="replace"))

    def attach_exec(self, name: str, command: list[str], env: dict[str, str],
                    workdir: str | None, user: str | None, tty: bool) -> ExecSession:
        """Start `command` with stdin attached (and a tty if asked); the caller closes it.

        Like the SDK's `exec_start(socket=True)`, but keeping the response, whose buffer
        may already hold the first output (see ExecSession)."""
        what = f"exec in {name}"
        environment = [f"{k}={v}" for k, v in env.items()]
        with translate(what):
            handle = self.api.exec_create(name, command, stdout=True, stderr=True, stdin=True,
                                          tty=tty, environment=environment, workdir=workdir,
                                          user=user or "")
            response = hijack_exec_start(self.api, handle["Id"], tty)
        return ExecSession(self.api, handle["Id"], response, tty, what)
