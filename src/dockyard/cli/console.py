"""`dockyard exec -i/-t`: an interactive exec over the server's console websocket.

Two threads, one socket: the main thread copies output frames to stdout until the exit
frame; a sender thread is the only writer of the socket and waits (select) on stdin and on
a self-pipe, which the SIGWINCH handler pokes for a resize and the main thread for a stop.
Signal handlers only write to that pipe, so nothing ever blocks inside a handler.
With `-t` and a terminal on stdin, the terminal is raw (keys such as ^C and ^D go to the
remote tty) and is restored on every way out. Protocol: see `agent/console.py`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import ssl
import sys
import termios
import threading
import tty as ttymode
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlencode

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from dockyard.cli.config import ca_path, read_config, server
from dockyard.errors import BackendError, from_reply

DEFAULT_SIZE = (80, 24)


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


def _connect(name: str, query: str) -> ClientConnection:
    url, token = server()
    target = (url.replace("http", "ws", 1) + f"/v1/instances/{quote(name, safe='')}/console")
    ca = ca_path(read_config())
    context = ssl.create_default_context(cafile=ca) if ca and url.startswith("https") else None
    try:
        return connect(f"{target}?{query}", open_timeout=30, ssl=context,
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


def _send_input(ws: ClientConnection, wake: int, stdin: int | None) -> None:
    """The one writer: stdin as binary frames, an eof frame at its end, resizes when poked.
    Returns when poked with b"q" or when the connection is closed."""
    sources = [wake] if stdin is None else [wake, stdin]
    try:
        while True:
            ready, _, _ = select.select(sources, [], [])
            if wake in ready:
                pokes = os.read(wake, 64)
                if b"q" in pokes:
                    return
                cols, rows = terminal_size()
                ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))
            if stdin is not None and stdin in ready:
                data = os.read(stdin, 4096)
                if data:
                    ws.send(data)
                else:
                    ws.send(json.dumps({"type": "eof"}))
                    sources.remove(stdin)
    except (ConnectionClosed, OSError):
        return  # the session ended; the main thread reports how


def _receive_output(ws: ClientConnection) -> int:
    """Copy output to stdout until the exit frame; the remote exit code."""
    code: int | None = None
    out = sys.stdout.buffer
    try:
        for frame in ws:
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


def _session(ws: ClientConnection, interactive: bool, tty: bool) -> int:
    wake, poke = os.pipe()
    watch_size = tty and sys.stdout.isatty()
    previous = (signal.signal(signal.SIGWINCH, lambda *_: os.write(poke, b"w"))
                if watch_size else None)
    sender = threading.Thread(target=_send_input, name="console-input", daemon=True,
                              args=(ws, wake, sys.stdin.fileno() if interactive else None))
    sender.start()
    try:
        return _receive_output(ws)
    finally:
        if watch_size:
            signal.signal(signal.SIGWINCH, previous)
        os.write(poke, b"q")
        sender.join(timeout=5)
        os.close(poke)
        if not sender.is_alive():
            os.close(wake)


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
    ws = _connect(name, urlencode(params, doseq=True))
    try:
        with _raw_terminal(tty and interactive and sys.stdin.isatty()):
            return _session(ws, interactive, tty)
    finally:
        ws.close()

