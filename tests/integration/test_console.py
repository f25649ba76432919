"""`dockyard exec -i/-t`: a console over websockets, CLI → server → agent → docker exec.

The `-it` test drives the real CLI through a real pseudo-terminal, as a person would: raw
mode, typing, a window resize (SIGWINCH from the kernel), and the exit code passed back.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from tests.integration.dockyard_env import IMAGE, VENV_BIN, Dockyard

NAME = "console-box"


@pytest.fixture
def box(dy: Dockyard) -> Iterator[str]:
    dy.ok("launch", IMAGE, NAME)
    try:
        yield NAME
    finally:
        dy.cli("delete", NAME, "--force")


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The CLI running on the slave side of a pty; we are the person at the master side."""

    def __init__(self, dy: Dockyard, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a session whose controlling terminal is the pty
            try:
                set_size(0, 24, 80)
                os.execve(str(VENV_BIN / "dockyard"), ["dockyard", *args], dy.env())
            finally:
                os._exit(127)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[bytes]:
        """Wait until `pattern` appears in output read since the last match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern.encode(), self.seen)
            if match:
                self.seen = self.seen[match.end():]
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no {pattern!r} in output: {self.seen[-500:]!r}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.seen += chunk
        return bool(chunk)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            self._read(0.1)  # keep draining so the child never blocks on output
        raise AssertionError("the CLI did not exit")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_interactive_tty_like_a_vm_console(dy: Dockyard, box: str) -> None:
    term = Terminal(dy, "exec", "-it", box, "--", "sh")
    try:
        term.type("echo hi-$((1+2))\r")
        term.expect(r"hi-3\r\n")  # the typed line is echoed as hi-$((1+2)): only output matches
        term.type("tty\r")
        term.expect(r"/dev/pts/\d+")
        term.type("stty size\r")
        term.expect(r"24 80\r\n")  # the initial size came with the handshake
        set_size(term.fd, 33, 111)  # the kernel sends the CLI a SIGWINCH
        deadline = time.monotonic() + 20  # asked again until the resize frame has arrived
        term.type("stty size\r")
        while term.expect(r"(\d+ \d+)\r\n").group(1) != b"33 111":
            assert time.monotonic() < deadline, "the resize never reached the instance"
            term.type("stty size\r")
        term.type("exit 5\r")
        assert term.wait() == 5
    finally:
        term.close()


def exec_shells(dy: Dockyard, box: str) -> list[str]:
    """Lines of `ps` for shells started by exec (PID 1 is `/bin/sh -c …`)."""
    return [line for line in dy.ok("exec", box, "--", "ps").out.splitlines()
            if line.rstrip().endswith(" sh")]


def test_vanished_client_hangs_up_the_remote_shell(dy: Dockyard, box: str) -> None:
    term = Terminal(dy, "exec", "-it", box, "--", "sh")
    try:
        # output, not the tty's echo of the typed line (that comes before the shell runs)
        term.type("echo ready-$((1+1))\r")
        term.expect(r"ready-2\r\n")
        assert len(exec_shells(dy, box)) == 1
        os.kill(term.pid, 9)  # no goodbye: the websocket just drops
        term.wait()
        deadline = time.monotonic() + 10
        while exec_shells(dy, box) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exec_shells(dy, box) == []
    finally:
        term.close()


def test_interactive_without_tty_streams_stdin(dy: Dockyard, box: str) -> None:
    cli = [str(VENV_BIN / "dockyard"), "exec", "-i", box, "--", "sh"]
    proc = subprocess.run(cli, input="echo piped\ntty || echo no-tty\nexit 3\n",
                          capture_output=True, text=True, env=dy.env(), timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("piped\n") and "no-tty" in proc.stdout
    # stdin's end reaches the process: cat ends by itself, exit code 0
    proc = subprocess.run([*cli[:-1], "cat"], input="line one\nline two\n",
                          capture_output=True, text=True, env=dy.env(), timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "line one\nline two\n"), proc.stderr


def test_console_refusals_are_one_clear_line(dy: Dockyard) -> None:
    cli = [str(VENV_BIN / "dockyard"), "exec", "-it", "no-such-box", "--", "sh"]
    proc = subprocess.run(cli, capture_output=True, text=True, env=dy.env(), timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "no-such-box" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    env = {**dy.env(), "DOCKYARD_URL": dy.url, "DOCKYARD_TOKEN": "not-a-token"}
    proc = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: the token is not valid"
