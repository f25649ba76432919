"""/v2/: the cluster registry's Docker Registry v2 API, behind Dockyard's tokens.

    docker login SERVER:PORT  (any user name; the password is a Dockyard token)
    docker / dockerd ─▶ /v2/… ─▶ HTTP Basic (or Bearer) token → Caller; else 401 + challenge
        ─▶ repository named by the path ─▶ image_access: GET/HEAD read, others write
        ─▶ streamed both ways to the registry (a unix socket), never held in memory

`/v2/` and `/v2/_catalog` are answered here (the catalog filtered to what the caller may
read). A cross-repository blob mount from a repository the caller may not read becomes a plain
upload. User tokens act in their own project; host tokens (agents pulling and pushing for the
server) and admins reach every repository. The proxy serves the same API for an outside
`--registry URL`, but engines then use that registry directly and only its own rules apply.

Not in the OpenAPI schema (`include_in_schema=False`): the protocol is Docker's, with its own
error shape `{"errors": [{"code", "message"}]}`, not Dockyard's `/v1` API.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dockyard.config import ServerSettings
from dockyard.errors import Forbidden, NotFound, Unauthorized
from dockyard.server import auth, image_access
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.server.registry import backend

REALM = "Dockyard registry"
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
READ = frozenset({"GET", "HEAD"})
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# NAME/(manifests|blobs|tags)/REST; greedy, so a name may itself contain such a word
ROUTE = re.compile(r"^(?P<name>.+)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$")
NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
HOP_BY_HOP = frozenset({"host", "authorization", "connection", "keep-alive", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authorization",
                        "proxy-authenticate"})
TIMEOUT = httpx.Timeout(30.0, read=600.0, write=600.0)  # a big layer's digest takes a while

router = APIRouter(include_in_schema=False)


class RegistryProxy:
    """The connection to the registry the proxy forwards to (app.state.registry_proxy)."""

    def __init__(self, settings: ServerSettings) -> None:
        url, uds = backend(settings)
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=TIMEOUT,
                                      transport=httpx.AsyncHTTPTransport(uds=uds)
                                      if uds else None)

    async def aclose(self) -> None:
        await self.http.aclose()


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = dict(API_VERSION)
    if status == 401:
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return JSONResponse({"errors": [{"code": code, "message": message, "detail": None}]},
                        status_code=status, headers=headers)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return decoded.partition(":")[2] or None


async def _caller(request: Request) -> Caller | None:
    token = _token(request)
    if token is None:
        return None
    try:
        return await run_in_threadpool(auth.token_caller, auth.context(request), token)
    except Unauthorized:
        return None


def _repo(ctx: ServerContext, name: str) -> image_access.Repo:
    with ctx.db.session() as sess:
        return image_access.classify(name, image_access.project_names(sess))


def _catalog(ctx: ServerContext, caller: Caller, n: int | None, last: str) -> JSONResponse:
    with ctx.db.session() as sess:
        projects = image_access.project_names(sess)
    names = [r for r in ctx.registry.repositories() if r > last and image_access.can_read(
        caller, image_access.classify(r, projects))]
    headers = dict(API_VERSION)
    if n is not None and len(names) > n:
        names = names[:n]
        headers["Link"] = f'</v2/_catalog?{urlencode({"n": n, "last": names[-1]})}>; ' \
            'rel="next"'
    return JSONResponse({"repositories": names}, headers=headers)


def _query(request: Request, caller: Caller, repo_of: dict[str, image_access.Repo]) -> str:
    """The query string to forward: a blob mount `from` an unreadable repository dropped."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    source = dict(pairs).get("from")
    if source is not None and not image_access.can_read(caller, repo_of[source]):
        pairs = [(k, v) for k, v in pairs if k not in ("from", "mount")]
    return urlencode(pairs)


@router.api_route("/v2/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
async def registry_api(path: str, request: Request) -> Response:
    caller = await _caller(request)
    if caller is None:
        return _error(401, "UNAUTHORIZED", "log in with a Dockyard token as the password "
                      "(docker login SERVER:PORT)")
    ctx = auth.context(request)
    if path == "":
        return JSONResponse({}, headers=API_VERSION)
    if path == "_catalog":
        n = request.query_params.get("n", "")
        return await run_in_threadpool(_catalog, ctx, caller, int(n) if n.isdigit() else None,
                                       request.query_params.get("last", ""))
    route = ROUTE.match(path)
    if route is None or not NAME.match(route["name"]):
        return _error(404, "NAME_INVALID", f"not a registry path: /v2/{path}")
    names = {route["name"], request.query_params.get("from") or route["name"]}
    repo_of = {n: await run_in_threadpool(_repo, ctx, n) for n in names}
    try:
        if request.method in READ:
            image_access.check_read(caller, repo_of[route["name"]])
        else:
            image_access.check_write(caller, repo_of[route["name"]])
    except NotFound:
        return _error(404, "NAME_UNKNOWN", f"repository {route['name']} not known to registry")
    except Forbidden as exc:
        return _error(403, "DENIED", exc.message)
    return await _forward(request, path, _query(request, caller, repo_of))


async def _forward(request: Request, path: str, query: str) -> Response:
    proxy: RegistryProxy = request.app.state.registry_proxy
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    upstream = proxy.http.build_request(
        request.method, f"/v2/{path}" + (f"?{query}" if query else ""), headers=headers,
        content=request.stream() if request.method in WITH_BODY else None)
    try:
        reply = await proxy.http.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        return _error(503, "UNAVAILABLE", f"the registry does not answer: {exc}")
    out = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
    if out.get("location", "").startswith(proxy.url):  # an outside registry's absolute URL
        out["location"] = out["location"][len(proxy.url):]
    return StreamingResponse(_relay(reply), status_code=reply.status_code, headers=out)


async def _relay(reply: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in reply.aiter_raw():
            yield chunk
    finally:  # also when the client went away mid-layer
        await reply.aclose()
