"""Bearer-token authentication. Tokens are looked up by hash; roles: admin, member, host.

A user token (admin or member) acts in its own project. An admin may act in another one by
naming it: `?project=NAME` on any user call (403 for a member, 404 for an unknown project).
Objects of other projects answer 404, as if they did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Query, Request

from dockyard.errors import Forbidden, Unauthorized
from dockyard.server.context import ServerContext
from dockyard.store import records, tokens


@dataclass(frozen=True)
class Caller:
    role: str
    project_id: str | None
    host_name: str | None
    token_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def project(self) -> str:
        """The project a user call acts in (`auth.user` guarantees there is one)."""
        assert self.project_id is not None
        return self.project_id


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def _caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)")
    return token_caller(context(request), token)


def token_caller(ctx: ServerContext, token: str) -> Caller:
    """Whose token this is; 401 when it is unknown or revoked."""
    with ctx.db.read() as sess:
        row = tokens.lookup(sess, token.strip())
        if row is None:
            raise Unauthorized("the token is not valid")
        return Caller(role=row.role, project_id=row.project_id, host_name=row.host_name,
                      token_id=row.id)


ProjectParam = Annotated[str | None, Query(
    description="admin only: act in this project instead of the token's own")]


def user(request: Request, project: ProjectParam = None) -> Caller:
    """A person's token (admin or member) with a project (another one for an admin who
    names it)."""
    caller = _caller(request)
    if caller.role not in ("admin", "member") or caller.project_id is None:
        raise Forbidden("this call needs a user token, not a host token")
    if project is None:
        return caller
    if not caller.is_admin:
        raise Forbidden("only an admin may act in another project (?project=)")
    with context(request).db.read() as sess:
        return replace(caller, project_id=records.project_by_name(sess, project).id)


def admin(caller: Annotated[Caller, Depends(user)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("only an admin may do this")
    return caller


def host(request: Request) -> Caller:
    """An agent's token, bound to one host name."""
    caller = _caller(request)
    if caller.role != "host" or caller.host_name is None:
        raise Forbidden("this call needs a host token")
    return caller
