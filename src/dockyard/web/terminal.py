"""/instances/{name}/terminal: an instance's shell in the page (xterm.js, vendored), over a
websocket the console relays to the instance's agent, as `/v1/instances/{ref}/console` does.

    page  ─▶ GET /instances/{name}/terminal (a visit: 404 for another project's instance)
    xterm ─▶ WS /instances/{name}/terminal/ws?cols=C&rows=R
             Origin must be this site's own (else the handshake is refused: 403), then
             the session cookie ─▶ base.visit ─▶ the caller's project ─▶ agent_target
             ─▶ server.console.relay with `command=sh&tty=true&cols&rows` (the agent's
             protocol, agent/console.py): binary frames both ways, resize/eof as text,
             {"type": "exit", "code": N} at the end, shown under the terminal

A websocket carries no CSRF field: the Origin check is what stops another site's page from
opening one with the visitor's cookie (browsers always send Origin on a websocket, and a
page cannot forge it; SameSite=Strict keeps the cookie off cross-site handshakes too).
Refusals after the handshake (no session, not found, not running) are said in one
`{"type": "error", ...}` frame, then close 1008, as the API's console does.
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from starlette.requests import HTTPConnection

from dockyard.errors import Unauthorized
from dockyard.server import console
from dockyard.server.routers.instances import agent_target
from dockyard.store import records
from dockyard.web.base import SECURITY_HEADERS, LoginRequired, PageRoute, Visit, render, visit

router = APIRouter(route_class=PageRoute, include_in_schema=False)

COMMAND = "sh"  # what the terminal runs: every image Dockyard launches has a sh
SIZE_LIMIT = 1000  # columns or rows at most
# xterm.js writes its sizes and colours into <style> elements: this page allows inline
# styles (never inline script), the others keep SECURITY_HEADERS' policy
TERMINAL_POLICY = SECURITY_HEADERS["Content-Security-Policy"] + \
    "; style-src 'self' 'unsafe-inline'"


@router.get("/instances/{name}/terminal")
def terminal_page(request: Request, name: str, seen: Visit = Depends(visit)) -> Response:
    with seen.ctx.db.read() as sess:
        row = records.instance_by_ref(sess, seen.caller.project, name)
        values = {"name": row.name, "state": row.state}
    response = render(request, "terminal.html", values, seen=seen)
    response.headers["Content-Security-Policy"] = TERMINAL_POLICY
    return response


def same_origin(conn: HTTPConnection) -> bool:
    """The handshake's Origin is this site (scheme, host and port as the browser reached
    it); a missing Origin (not a browser) is refused too: the cookie is a browser's."""
    origin = conn.headers.get("origin", "")
    host = conn.headers.get("host", "")
    scheme = "https" if conn.url.scheme in ("wss", "https") else "http"
    return bool(host) and origin == f"{scheme}://{host}"


def _size(value: str | None, default: int) -> int:
    try:
        return min(SIZE_LIMIT, max(1, int(value or default)))
    except ValueError:
        return default


def _target(websocket: WebSocket, name: str) -> tuple[str, str, str, str]:
    try:
        seen = visit(cast(Request, websocket))
    except LoginRequired:
        raise Unauthorized("no console session: log in again") from None
    return agent_target(seen.ctx, seen.caller.project, name)


@router.websocket("/instances/{name}/terminal/ws")
async def terminal_socket(websocket: WebSocket, name: str) -> None:
    if not same_origin(websocket):
        await websocket.close(console.CLOSE_REFUSED)  # before accept: an HTTP 403
        return
    await websocket.accept()
    params = websocket.query_params
    query = urlencode({"command": COMMAND, "tty": "true",
                       "cols": _size(params.get("cols"), 80),
                       "rows": _size(params.get("rows"), 24)})
    await console.relay(websocket, lambda: _target(websocket, name), query)
