"""What every console page shares: the visit (session → caller), form bodies with their CSRF
check, rendering, and the route class that shows a refusal as a page in words.

A page handler takes a `Visit` (GET) or a `Posted` (POST: the visit, the form, CSRF checked)
and calls the same server functions as the /v1 routers with the same `Caller`, so a page can
do exactly what the caller's token may do through the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from dockyard.errors import DockyardError, Forbidden, MalformedRequest
from dockyard.model.units import format_size
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import audit, projects
from dockyard.web import session as sessions

log = logging.getLogger(__name__)

FORM_LIMIT = 64 * 1024  # bytes of a form body
FORM_TYPE = "application/x-www-form-urlencoded"

templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                        trim_blocks=True, lstrip_blocks=True)


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


templates.filters["size"] = format_size
templates.filters["ago"] = _ago


class LoginRequired(Exception):  # noqa: N818 - a control-flow signal, not an error
    """No valid session: the page sends the browser to /login."""


@dataclass(frozen=True)
class Visit:
    request: Request
    ctx: ServerContext
    caller: Caller
    session: sessions.Session
    csrf: str
    project_name: str

    @property
    def scope(self) -> str | None:
        """What the caller sees where the API scopes by role (events, alerts): None (all)
        for an admin, else the project."""
        return None if self.caller.is_admin else self.caller.project


@dataclass(frozen=True)
class Posted:
    visit: Visit
    form: dict[str, str]

    def field(self, name: str) -> str:
        return self.form.get(name, "").strip()


def key_of(request: Request) -> bytes:
    key: bytes = request.app.state.web_key
    return key


def visit(request: Request) -> Visit:
    """The visitor's session and caller (as `auth.user` builds it); LoginRequired without
    a valid one."""
    ctx = auth.context(request)
    key = key_of(request)
    cookie = request.cookies.get(sessions.COOKIE, "")
    session = sessions.unseal(key, cookie, sessions.now()) if cookie else None
    caller = sessions.caller_of(ctx, session) if session else None
    if session is None or caller is None:
        raise LoginRequired()
    request.state.token_id = caller.token_id  # whose call the audit row names
    with ctx.db.read() as sess:
        row = projects.get(sess, caller.project_id)
        name = row.name if row else ""
    return Visit(request, ctx, caller, session, sessions.csrf_token(key, session), name)


def admin_visit(request: Request) -> Visit:
    """A visit of an admin; 403 for a member (the API's `auth.admin`)."""
    seen = visit(request)
    if not seen.caller.is_admin:
        raise Forbidden("only an admin may see this page")
    return seen


async def form_of(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        raise MalformedRequest(f"a form is sent as {FORM_TYPE}")
    body = b""
    async for chunk in request.stream():  # read no further than the limit
        body += chunk
        if len(body) > FORM_LIMIT:
            raise MalformedRequest("the form is too large")
    try:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"the form cannot be read: {exc}") from exc
    request.state.form = form
    return form


async def posted(request: Request) -> Posted:
    """A POST of a logged-in visitor whose csrf_token matches the session's; 403 otherwise."""
    seen = await run_in_threadpool(visit, request)
    form = await form_of(request)
    sessions.check_csrf(seen.csrf, form.get(sessions.CSRF_FIELD))
    return Posted(seen, form)


def invalid(exc: ValidationError) -> str:
    """A pydantic refusal in words, one clause per field."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def render(request: Request, name: str, values: dict[str, Any], status: int = 200,
           seen: Visit | None = None) -> HTMLResponse:
    html = templates.get_template(name).render(request=request, visit=seen, **values)
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _login_redirect(request: Request) -> Response:
    target = "/login?next=" + quote(request.url.path, safe="/")
    if request.headers.get("hx-request"):  # htmx: navigate the whole page, not the fragment
        return Response(status_code=204, headers={"HX-Redirect": target})
    return redirect(target)


def _error_page(request: Request, exc: DockyardError) -> Response:
    if request.headers.get("hx-request"):
        return render(request, "_error.html", {"message": exc.message}, exc.status)
    return render(request, "error.html", {"status": exc.status, "message": exc.message},
                  exc.status)


class PageRoute(APIRoute):
    """A console route: DockyardError → a page with the message and the error's status
    (never a stack trace, never the API's JSON); no session → /login."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = _login_redirect(request)
            except DockyardError as exc:
                response = _error_page(request, exc)
            response.headers.update(SECURITY_HEADERS)
            if request.method == "POST":
                await asyncio.to_thread(_audit, request, response.status_code)
            return response

        return page


def _audit(request: Request, status: int) -> None:
    """Every console POST in the audit log, as the middleware records /v1 calls: refused
    ones too (anonymous without a session), before the reply leaves."""
    parts = [p for p in request.url.path.split("/") if p]
    form: dict[str, str] = getattr(request.state, "form", {})
    target = parts[1] if len(parts) >= 2 else form.get("name", form.get("project", ""))
    call = audit.Call(token=None, method=request.method, path=request.url.path,
                      status=status, target=target)
    try:
        with auth.context(request).db.session() as sess:
            audit.record_for(sess, getattr(request.state, "token_id", None), call)
    except Exception:  # the reply is made already: the log is all we can do
        log.exception("cannot write the audit row of %s %s", call.method, call.path)


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
