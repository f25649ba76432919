"""Bearer-token authentication. Tokens are looked up by hash; roles: admin, member, host.

A user token (admin or member) acts in its own project. An admin may act in another one by
naming it: `?project=NAME` on any user call (403 for a member, 404 for an unknown project).
Objects of other projects answer 404, as if they did not exist.

Verified tokens are cached in this process (`TokenCache`): an agent calls several times a
minute, and a store transaction per call to find its token was most of what a heartbeat
cost. An entry is used for at most `TokenCache.TTL` seconds and dropped by any revocation
this process makes (`tokens.revocation_epoch`): a token revoked through this server answers
401 from the next call on; one revoked through another server sharing the store, within TTL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

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


class TokenCache:
    """token hash -> (Caller, when verified, revocation epoch then); thread-safe. Unknown
    tokens are never cached (a stranger's guesses cannot fill it); its size is bounded by
    the valid tokens used in the last TTL seconds, swept when it passes MAX."""

    TTL = 30.0
    MAX = 50_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Caller, float, int]] = {}

    def get(self, digest: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None:
            return None
        caller, at, epoch = entry
        if epoch != tokens.revocation_epoch() or time.monotonic() - at > self.TTL:
            return None
        return caller

    def put(self, digest: str, caller: Caller, epoch: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.MAX:
                self._entries = {k: v for k, v in self._entries.items()
                                 if now - v[1] <= self.TTL}
            self._entries[digest] = (caller, now, epoch)


_cache = TokenCache()


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


async def server_context(request: Request) -> ServerContext:
    """`context` for routes that want no worker-thread hop for it (the agent feed)."""
    return context(request)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)")
    return token


def _caller(request: Request) -> Caller:
    return token_caller(context(request), _bearer(request))


def token_caller(ctx: ServerContext, token: str) -> Caller:
    """Whose token this is; 401 when it is unknown or revoked."""
    digest = tokens.hash_token(token.strip())
    caller = _cache.get(digest)
    if caller is not None:
        return caller
    epoch = tokens.revocation_epoch()  # before the read: a revocation during it drops it
    with ctx.db.read() as sess:
        row = tokens.lookup_hash(sess, digest)
        if row is None:
            raise Unauthorized("the token is not valid")
        caller = Caller(role=row.role, project_id=row.project_id, host_name=row.host_name,
                        token_id=row.id)
    _cache.put(digest, caller, epoch)
    return caller


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


async def host(request: Request) -> Caller:
    """An agent's token, bound to one host name. On the event loop when the token is cached
    (the agents' calls: no worker-thread hop), in a worker thread when the store is read."""
    token = _bearer(request)
    caller = _cache.get(tokens.hash_token(token.strip()))
    if caller is None:
        caller = await run_in_threadpool(token_caller, context(request), token)
    if caller.role != "host" or caller.host_name is None:
        raise Forbidden("this call needs a host token")
    return caller
