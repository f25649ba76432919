"""The audit middleware and `GET /v1/audit`.

Every POST, PUT, PATCH and DELETE under `/v1/` is recorded as soon as its reply's status is
known and before the reply is sent (a client that reads the log next sees it), refused ones
too (401/403/4xx), with the caller resolved from the bearer token. Not recorded:
reads, the console websocket (an exec session, seen in the instance's events), and the agent
feed's high-volume machine traffic (`/v1/agent/heartbeat`, `/events`, `/stats`,
`/instances/*/report`: several calls per host per second that change observed, not desired,
state). Agent registration is recorded.

The target is the object named in the path (`/v1/instances/web/actions/stop` → `web`), else
the `name` of a JSON body (creations). The row is written in a worker thread; a failed write
is logged, never turned into a failed request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.model.audit import AuditEntry, AuditPage
from dockyard.model.units import MAX_AMOUNT as MAX_ID
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import audit, projects

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FEED_NOT_AUDITED = re.compile(r"^/v1/agent/(heartbeat|events|stats|instances/[^/]+/report)/?$")
BODY_KEPT = 64 * 1024  # bytes of a request body looked at for its `name`

router = APIRouter(tags=["audit"])


def audited(method: str, path: str) -> bool:
    return method in MUTATING and path.startswith("/v1/") and not FEED_NOT_AUDITED.match(path)


def target_of(path: str, body: bytes) -> str:
    parts = [unquote(p) for p in path.split("/") if p]
    if len(parts) >= 3 and parts[1] != "agent":
        return parts[2]
    try:
        data: Any = json.loads(body) if body else None
    except (ValueError, RecursionError):  # a body nested thousands deep
        return ""
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else ""


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        recorded = [False]

        async def tee(message_source: Receive = receive) -> Message:
            message = await message_source()
            if message["type"] == "http.request" and len(body) < BODY_KEPT:
                body.extend(message.get("body", b"")[:BODY_KEPT - len(body)])
            return message

        async def note(status: int) -> None:
            recorded[0] = True
            call = audit.Call(token=_bearer(scope), method=scope["method"], path=scope["path"],
                              status=status, target=target_of(scope["path"], bytes(body)))
            await asyncio.shield(asyncio.to_thread(self._write, call))

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":  # before the reply leaves: a
                await note(int(message["status"]))  # client that reads the log sees it
            await send(message)

        try:
            await self.app(scope, tee, watch)
        finally:
            if not recorded[0]:
                await note(500)

    def _write(self, call: audit.Call) -> None:
        try:
            with self.ctx.db.session() as sess:
                audit.record(sess, call)
        except Exception:  # the reply is gone already: the log is all we can do
            log.exception("cannot write the audit row of %s %s", call.method, call.path)


@router.get("/v1/audit", response_model=AuditPage)
def list_audit(limit: int = Query(100, ge=1, le=1000),
               after: int = Query(0, ge=0, le=MAX_ID,
                                  description="the `next` of the previous page"),
               _: Caller = Depends(auth.admin),
               ctx: ServerContext = Depends(auth.context)) -> AuditPage:
    """Mutating API calls, oldest first (admin only)."""
    with ctx.db.session() as sess:
        rows, more = audit.page(sess, after, limit)
        names = projects.names_by_id(sess)
        items = [AuditEntry(id=r.id, time=r.time if r.time.tzinfo else r.time.replace(tzinfo=UTC),
                            token_id=r.token_id,
                            token=r.token_description, role=r.role,
                            project=names.get(r.project_id) if r.project_id else None,
                            method=r.method, path=r.path, status=r.status, target=r.target)
                 for r in rows]
    return AuditPage(items=items, next=str(rows[-1].id) if more and rows else None)
