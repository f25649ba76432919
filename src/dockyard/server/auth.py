"""Bearer-token authentication. Tokens are looked up by hash; roles: admin, member, host."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from dockyard.errors import Forbidden, Unauthorized
from dockyard.server.context import ServerContext
from dockyard.store import tokens


@dataclass(frozen=True)
class Caller:
    role: str
    project_id: str | None
    host_name: str | None


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def _caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)")
    with context(request).db.session() as sess:
        row = tokens.lookup(sess, token.strip())
        if row is None:
            raise Unauthorized("the token is not valid")
        return Caller(role=row.role, project_id=row.project_id, host_name=row.host_name)


def user(request: Request) -> Caller:
    """A person's token (admin or member) with a project."""
    caller = _caller(request)
    if caller.role not in ("admin", "member") or caller.project_id is None:
        raise Forbidden("this call needs a user token, not a host token")
    return caller


def admin(request: Request) -> Caller:
    caller = user(request)
    if caller.role != "admin":
        raise Forbidden("only an admin may do this")
    return caller


def host(request: Request) -> Caller:
    """An agent's token, bound to one host name."""
    caller = _caller(request)
    if caller.role != "host" or caller.host_name is None:
        raise Forbidden("this call needs a host token")
    return caller
