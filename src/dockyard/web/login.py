"""/login, /logout and /project: the session's start, end and (admins) the project acted in."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from dockyard.errors import DockyardError, Forbidden
from dockyard.server import auth
from dockyard.store import records
from dockyard.web import session as sessions
from dockyard.web.base import (
    LoginRequired,
    PageRoute,
    Posted,
    Visit,
    form_of,
    key_of,
    posted,
    redirect,
    render,
    visit,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def set_cookie(request: Request, response: Response, name: str, value: str,
               max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def _safe_next(target: str) -> str:
    """Only a path of this site (never `//elsewhere` nor a scheme)."""
    ok = target.startswith("/") and not target.startswith(("//", "/\\"))
    return target if ok else "/"


def _login_page(request: Request, message: str, status: int) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", {
        "message": message, "csrf": nonce,
        "next": _safe_next(request.query_params.get("next", "/"))}, status)
    set_cookie(request, response, sessions.LOGIN_COOKIE, nonce, 600)
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    try:
        visit(request)
    except LoginRequired:
        return _login_page(request, "", 200)
    return redirect(_safe_next(request.query_params.get("next", "/")))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    given = form.get(sessions.CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(expected, given):
        raise Forbidden("the login form's csrf_token is missing or wrong: reload the page")
    ctx = auth.context(request)
    try:
        session = await run_in_threadpool(sessions.login, ctx, form.get("token", ""),
                                          sessions.now())
    except DockyardError as exc:
        return _login_page(request, exc.message, exc.status)
    request.state.token_id = session.token_id
    response = redirect(_safe_next(form.get("next", "/")))
    set_cookie(request, response, sessions.COOKIE, sessions.seal(key_of(request), session),
               sessions.TTL)
    response.delete_cookie(sessions.LOGIN_COOKIE, path="/")
    return response


@router.get("/logout")
def logout_form(request: Request, seen: Visit = Depends(visit)) -> Response:
    return render(request, "logout.html", {}, seen=seen)


@router.post("/logout")
def logout(request: Request, form: Posted = Depends(posted)) -> Response:
    sessions.logout(form.visit.ctx, form.visit.session, sessions.now())
    response = redirect("/login")
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.post("/project")
def switch_project(request: Request, form: Posted = Depends(posted)) -> Response:
    """An admin acts in another project (the API's `?project=`); 403 for a member."""
    seen = form.visit
    if not seen.caller.is_admin:
        raise Forbidden("only an admin may act in another project")
    with seen.ctx.db.read() as sess:
        project = records.project_by_name(sess, form.field("project"))
    chosen = sessions.in_project(seen.session, project.id)
    response = redirect("/instances")
    set_cookie(request, response, sessions.COOKIE, sessions.seal(key_of(request), chosen),
               max(1, int(chosen.expires - sessions.now())))
    return response
