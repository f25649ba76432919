"""`/v1/instances/{ref}/console`: an interactive exec, relayed to the instance's agent.

The server is a plain relay: it authenticates the user (bearer token on the websocket
handshake), finds the running instance and its host, opens the agent's console websocket
with the host's secret, forwards the query string unchanged (the agent validates it, see
`agent/console.py` for the protocol) and then copies frames both ways, binary as binary and
text as text, ending with the agent's own close code.

Refusals (bad token, unknown or stopped instance, agent unreachable) accept the socket first
so they can say why: one `{"type": "error", "status", "error": {...}}` text frame, then close
1008 (status < 500) or 1011.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from typing import cast

from fastapi import APIRouter, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from dockyard.errors import BackendError, DockyardError
from dockyard.server import auth
from dockyard.server.agent_proxy import agent_url
from dockyard.server.routers.instances import agent_target

router = APIRouter(prefix="/v1/instances", tags=["instances"])

CLOSE_REFUSED = 1008  # policy violation: 4xx
CLOSE_FAILED = 1011  # internal error: 5xx


async def _refuse(websocket: WebSocket, exc: DockyardError) -> None:
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    frame = {"type": "error", "status": exc.status, **exc.to_body()}
    await websocket.send_text(json.dumps(frame))
    await websocket.close(CLOSE_REFUSED if exc.status < 500 else CLOSE_FAILED,
                          exc.message[:120])


def _target(websocket: WebSocket, ref: str) -> tuple[str, str, str, str]:
    """(host, agent url, agent secret, instance id) of a running instance of the caller's."""
    # auth.user reads only the headers and the app, which a WebSocket has like a Request
    caller = auth.user(cast(Request, websocket))
    assert caller.project_id is not None
    return agent_target(auth.context(cast(Request, websocket)), caller.project_id, ref)


async def _open_agent(target: tuple[str, str, str, str], query: str,
                      context: ssl.SSLContext | None) -> ClientConnection:
    """`context`: the cluster CA's, for an agent that serves wss:// (TLS clusters)."""
    host, url, secret, instance_id = target
    ws_url = agent_url(host, url, f"/v1/instances/{instance_id}/console").replace("http", "ws", 1)
    try:
        return await connect(f"{ws_url}?{query}", open_timeout=10,
                             ssl=context if ws_url.startswith("wss") else None,
                             additional_headers={"Authorization": f"Bearer {secret}"})
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise BackendError(f"host {host}: agent console unreachable: {exc}") from exc


async def _to_agent(websocket: WebSocket, agent: ClientConnection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await agent.send(message["bytes"])
        elif message.get("text") is not None:
            await agent.send(message["text"])


async def _to_client(websocket: WebSocket, agent: ClientConnection, host: str) -> None:
    try:
        async for frame in agent:
            if isinstance(frame, bytes):
                await websocket.send_bytes(frame)
            else:
                await websocket.send_text(frame)
    except ConnectionClosed as exc:
        if exc.rcvd is None:  # no close frame: the agent died or the link broke
            await _refuse(websocket, BackendError(f"host {host}: console connection lost"))
            return
    code, reason = agent.close_code or 1000, agent.close_reason or ""
    await websocket.close(code, reason)


async def _relay(websocket: WebSocket, agent: ClientConnection, host: str) -> None:
    """Until either side ends; the client leaving mid-write is a normal end."""
    tasks = [asyncio.create_task(_to_agent(websocket, agent)),
             asyncio.create_task(_to_client(websocket, agent, host))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if failure is not None and not isinstance(failure, (WebSocketDisconnect,
                                                                 ConnectionClosed)):
                raise failure
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def relay(websocket: WebSocket, target: Callable[[], tuple[str, str, str, str]],
                query: str) -> None:
    """Open the agent's console of `target()` (run in a thread: it reads the store) with
    `query` and relay until either side ends; a refusal is said on the accepted socket.
    The web console's terminal (`web/terminal.py`) comes in here too, after its own checks."""
    if websocket.application_state != WebSocketState.CONNECTED:
        await websocket.accept()
    try:
        found = await run_in_threadpool(target)
        agent = await _open_agent(found, query,
                                  auth.context(cast(Request, websocket)).agents.ssl)
    except DockyardError as exc:
        await _refuse(websocket, exc)
        return
    async with agent:
        await _relay(websocket, agent, found[0])


@router.websocket("/{ref}/console")
async def instance_console(websocket: WebSocket, ref: str) -> None:
    """Interactive exec: `?command=sh&tty=true&cols=80&rows=24` (see agent/console.py)."""
    await relay(websocket, lambda: _target(websocket, ref), websocket.url.query)
