"""`dockyard exec -i/-t`: an interactive exec over the server's console websocket; and
`dockyard console VM`, a VM's serial console over the same websocket (`serial=true`), left
with Ctrl-] (as telnet and `virsh console`), which ends the session like stdin's end does.

One event loop owns the connection (websockets' asyncio client; its threaded sync client
reads and writes the TLS socket from two threads, and about 1 in 200 refused handshakes
failed on a socket closed under it or waited out the open timeout). The loop copies output
frames to stdout until the exit frame; one sender task is the only writer of the socket and
sends what a queue holds: stdin's chunks, handed over by a daemon thread that reads stdin
(a terminal, a pipe or a regular file alike: epoll takes no regular files), an eof frame at
its end, and the new size after each SIGWINCH (a signal handler of the loop's, so nothing
runs inside the signal itself). With `-t` and a terminal on stdin, the terminal is raw (keys
such as ^C and ^D go to the remote tty) and is restored on every way out. Protocol: see
`agent/console.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import termios
import threading
import tty as ttymode
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import quote, urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from dockyard.cli.config import ca_path, read_config, server
from dockyard.errors import BackendError, from_reply

DEFAULT_SIZE = (80, 24)
EOF = b""  # stdin's end, as the reader thread hands it over
ESCAPE = b"\x1d"  # Ctrl-]: leaves a serial console


def terminal_size() -> tuple[int, int]:
    """(cols, rows) of the terminal on stdout or stdin; 80x24 when there is none."""
    for stream in (sys.stdout, sys.stdin):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError):
            continue
        if size.columns and size.lines:
            return size.columns, size.lines
    return DEFAULT_SIZE


async def _connect(name: str, query: str) -> ClientConnection:
    url, token = server()
    target = (url.replace("http", "ws", 1) + f"/v1/instances/{quote(name, safe='')}/console")
    ca = ca_path(read_config())
    context = ssl.create_default_context(cafile=ca) if ca and url.startswith("https") else None
    try:
        return await connect(f"{target}?{query}", open_timeout=30, ssl=context,
                             additional_headers={"Authorization": f"Bearer {token}"})
    except InvalidStatus as exc:
        raise from_reply(exc.response.status_code, exc.response.body or b"") from exc
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc


@contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """Raw mode on the stdin terminal while the block runs, restored however it ends."""
    if not enabled:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    ttymode.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | str],
                fd: int, escape: bytes | None = None) -> None:
    """The reader thread: stdin's chunks into the loop's queue, EOF at its end (or at the
    `escape` byte: what came before it is sent). A daemon: when the session ends first, it
    is left blocked in its read and dies with the process."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = EOF
        if escape is not None and escape in data:
            before = data.split(escape, 1)[0]
            if before:
                loop.call_soon_threadsafe(queue.put_nowait, before)
            data = EOF
        try:
            loop.call_soon_threadsafe(queue.put_nowait, data)
        except RuntimeError:  # the loop is closed: the session is over
            return
        if data == EOF:
            return


def _resize_frame() -> str:
    cols, rows = terminal_size()
    return json.dumps({"type": "resize", "cols": cols, "rows": rows})


async def _send_input(ws: ClientConnection, queue: asyncio.Queue[bytes | str]) -> None:
    """The one writer: stdin as binary frames, an eof frame at its end, resize frames; until
    cancelled or the connection is closed."""
    try:
        while True:
            item = await queue.get()
            if item == EOF:
                await ws.send(json.dumps({"type": "eof"}))
            else:
                await ws.send(item)
    except ConnectionClosed:
        return  # the session ended; the receiving side reports how


async def _receive_output(ws: ClientConnection) -> int:
    """Copy output to stdout until the exit frame; the remote exit code."""
    code: int | None = None
    out = sys.stdout.buffer
    try:
        async for frame in ws:
            if isinstance(frame, bytes):
                out.write(frame)
                out.flush()
                continue
            message = json.loads(frame)
            if message.get("type") == "error":
                raise from_reply(int(message.get("status", 500)), message)
            if message.get("type") == "exit":
                code = int(message["code"])
    except ConnectionClosed as exc:
        raise BackendError(f"console connection lost: {exc}") from exc
    if code is None:
        raise BackendError("the console closed without an exit code")
    return code


async def _session(query: str, name: str, interactive: bool, tty: bool,
                   escape: bytes | None = None) -> int:
    ws = await _connect(name, query)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | str] = asyncio.Queue()
    watch_size = tty and sys.stdout.isatty()
    if watch_size:
        loop.add_signal_handler(signal.SIGWINCH, lambda: queue.put_nowait(_resize_frame()))
    if interactive:
        threading.Thread(target=_read_stdin, name="console-stdin", daemon=True,
                         args=(loop, queue, sys.stdin.fileno(), escape)).start()
    sender = asyncio.create_task(_send_input(ws, queue))
    try:
        with _raw_terminal(tty and interactive and sys.stdin.isatty()):
            return await _receive_output(ws)
    finally:
        if watch_size:
            loop.remove_signal_handler(signal.SIGWINCH)
        sender.cancel()
        with suppress(asyncio.CancelledError):
            await sender
        await ws.close()


def run_console(name: str, command: list[str], env: dict[str, str], workdir: str | None,
                user: str | None, interactive: bool, tty: bool) -> int:
    """Run `command` in instance `name` attached to this terminal; its exit code."""
    cols, rows = terminal_size()
    params: dict[str, object] = {"command": command, "tty": str(tty).lower(), "cols": cols,
                                 "rows": rows, "env": [f"{k}={v}" for k, v in env.items()]}
    if workdir:
        params["workdir"] = workdir
    if user:
        params["user"] = user
    return asyncio.run(_session(urlencode(params, doseq=True), name, interactive, tty))


def run_serial(name: str) -> int:
    """Attach this terminal to VM `name`'s serial console until Ctrl-] (or stdin's end)."""
    if sys.stdin.isatty():
        sys.stderr.write(f"connected to the serial console of {name}; leave with Ctrl-]\r\n")
    return asyncio.run(_session("serial=true", name, True, True, ESCAPE))
