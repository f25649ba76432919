"""The agent's console: `/v1/instances/{id}/console`, a websocket onto an attached docker exec.

Protocol (the server's proxy passes it through unchanged; the CLI speaks it):

    binary frames      raw bytes: stdin towards the process, its output back
                       (without a tty stdout and stderr arrive merged)
    text, client→agent {"type": "resize", "cols": N, "rows": M}   {"type": "eof"}
    text, agent→client {"type": "exit", "code": N}, then a normal close (1000)
                       {"type": "error", "status": S, "error": {"code", "message"}}, then
                       close 1008 (S < 500: refused) or 1011 (the host failed)

Query: `command` (repeated), `tty`, `cols`, `rows`, `env` (repeated KEY=VALUE), `workdir`,
`user`; or `serial=true` for a VM's serial console (`dockyard console`, agent/vm_access.py:
bytes both ways; exit code 0 when the VM's side closes). A VM refuses an exec here (422:
guest-exec has no terminal) and a container refuses `serial`. Authenticated like the rest
of the agent API: `Authorization: Bearer SECRET` on the handshake. The socket is accepted
before checking, so a refusal can say why.

Concurrency: a FastAPI websocket endpoint is async, while the rest of the agent is threaded
and `ExecSession` blocks. Output is read by one thread per console (a single-worker executor
of its own, so open consoles never starve each other or the loop's default executor); stdin
writes, resizes and the exit-code wait are short and go through `asyncio.to_thread`.
Invariants: the exec's socket is closed when the endpoint returns, whoever hung up first;
a client that leaves before the exit hangs up a tty process (SIGHUP), as sshd does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Protocol

from fastapi import FastAPI, Query, WebSocket
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect, WebSocketState

from dockyard.adapters.docker_engine import DockerEngine, ExecSession
from dockyard.agent.vm_access import NO_TTY_EXEC, VmAccess
from dockyard.errors import DockyardError, InvalidRequest
from dockyard.model.instance import ExecRequest

CLOSE_NORMAL = 1000
CLOSE_REFUSED = 1008  # policy violation: 4xx
CLOSE_FAILED = 1011  # internal error: 5xx


class Session(Protocol):
    """What `pump` drives: an attached docker exec (ExecSession) or a VM's serial console."""

    def send(self, data: bytes) -> None: ...
    def recv(self) -> bytes: ...
    def resize(self, cols: int, rows: int) -> None: ...
    def close_stdin(self) -> None: ...
    def exit_code(self) -> int: ...
    def hangup(self) -> None: ...
    def close(self) -> None: ...


async def refuse(websocket: WebSocket, exc: DockyardError) -> None:
    """Say why in a text frame, then close with a code a client can tell apart."""
    frame = {"type": "error", "status": exc.status, **exc.to_body()}
    await websocket.send_text(json.dumps(frame))
    await websocket.close(CLOSE_REFUSED if exc.status < 500 else CLOSE_FAILED,
                          exc.message[:120])


def _request(command: list[str], env: list[str], workdir: str | None,
             user: str | None) -> ExecRequest:
    pairs = [item.partition("=") for item in env]
    if any(not sep for _, sep, _ in pairs):
        raise InvalidRequest("env entries must be KEY=VALUE")
    try:
        return ExecRequest(command=command, env={k: v for k, _, v in pairs},
                           workdir=workdir, user=user)
    except ValidationError as exc:
        raise InvalidRequest("console needs a command: ?command=sh (repeat for args)") from exc


async def _input(websocket: WebSocket, session: Session) -> None:
    """Client → process until the client hangs up. Control frames are applied in order, so a
    resize lands before the keystrokes typed after it. Failures here (the process already
    exited, a resize after the end) do not end the session: the output side reports the exit.
    """
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            if message.get("bytes") is not None:
                await asyncio.to_thread(session.send, message["bytes"])
            else:
                await _control(session, message.get("text") or "")
        except DockyardError:
            continue


async def _control(session: Session, text: str) -> None:
    try:
        control = json.loads(text)
        kind = control.get("type")
        size = (int(control["cols"]), int(control["rows"])) if kind == "resize" else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return  # a malformed control frame is ignored, not fatal to the session
    if size is not None:
        await asyncio.to_thread(session.resize, *size)
    elif kind == "eof":
        await asyncio.to_thread(session.close_stdin)


async def _output(websocket: WebSocket, session: Session, reader: ThreadPoolExecutor) -> None:
    """Process → client until the process closes its output, then report its exit code."""
    loop = asyncio.get_running_loop()
    while data := await loop.run_in_executor(reader, session.recv):
        await websocket.send_bytes(data)
    code = await asyncio.to_thread(session.exit_code)
    await websocket.send_text(json.dumps({"type": "exit", "code": code}))
    await websocket.close(CLOSE_NORMAL)


async def pump(websocket: WebSocket, session: Session) -> None:
    """Run both directions until either ends; then close the exec and let the reader finish."""
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-read")
    tasks = [asyncio.create_task(_input(websocket, session)),
             asyncio.create_task(_output(websocket, session, reader))]
    client_left = True
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        client_left = tasks[1] not in done
        failure = next((t.exception() for t in done if t.exception() is not None), None)
        if isinstance(failure, DockyardError):  # e.g. dockerd gone before the exit code
            if websocket.application_state == WebSocketState.CONNECTED:
                await refuse(websocket, failure)
        elif failure is not None and not isinstance(failure, WebSocketDisconnect):
            raise failure  # the client leaving mid-write is a normal end, anything else not
    finally:
        if client_left:  # like sshd: a vanished client hangs up its terminal
            with suppress(DockyardError):
                await asyncio.to_thread(session.hangup)
        session.close()  # unblocks the reader thread if the client hung up first
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        reader.shutdown(wait=False)


def install_console(app: FastAPI, engine: DockerEngine,
                    authorized: Callable[[HTTPConnection], None],
                    owned: Callable[[str], str], vms: VmAccess | None = None) -> None:
    """Add the console route; `authorized` and `owned` are the agent API's own checks."""

    def open_session(instance_id: str, req: ExecRequest, tty: bool, cols: int,
                     rows: int) -> ExecSession:
        if vms is not None and vms.owns(instance_id):
            raise InvalidRequest(NO_TTY_EXEC)
        session = engine.attach_exec(owned(instance_id), req.command, req.env, req.workdir,
                                     req.user, tty)
        # dockerd only resizes a started exec, so this races a quick command's exit (then
        # it fails harmlessly: the output side reports the exit code)
        with suppress(DockyardError):
            session.resize(cols, rows)
        return session

    def open_serial(instance_id: str) -> Session:
        if vms is None or not vms.owns(instance_id):
            raise InvalidRequest("only VMs have a serial console: use `dockyard exec -it` "
                                 "for a container")
        return vms.console(instance_id)

    @app.websocket("/v1/instances/{instance_id}/console")
    async def console(websocket: WebSocket, instance_id: str,
                      command: list[str] = Query([]), tty: bool = False,  # noqa: B008
                      cols: int = 80, rows: int = 24,
                      env: list[str] = Query([]),  # noqa: B008
                      workdir: str | None = None, user: str | None = None,
                      serial: bool = False) -> None:
        await websocket.accept()
        session: Session
        try:
            authorized(websocket)
            if serial:
                session = await asyncio.to_thread(open_serial, instance_id)
            else:
                req = _request(command, env, workdir, user)
                session = await asyncio.to_thread(open_session, instance_id, req, tty, cols,
                                                  rows)
        except DockyardError as exc:
            await refuse(websocket, exc)
            return
        await pump(websocket, session)
