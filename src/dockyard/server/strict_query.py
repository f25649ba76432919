"""Unknown query parameters are refused (422), as the OpenAPI document promises.

FastAPI ignores a query parameter a route does not declare, so `DELETE /v1/instances/x?forec=
true` would quietly delete without `force` semantics checked, and a client's typo would go
unnoticed; and schemathesis's negative phase (tests/integration/test_fuzz.py) sends such
parameters and expects them refused. Nova made the same choice for its query strings
(microversion 2.75). Applied to the /v1 API routes in the schema only: the agents' feed
(`/v1/agent/…`, machine traffic across versions), the registry's `/v2/` and the web console
keep the framework's leniency.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from dockyard.errors import InvalidRequest

_KNOWN: dict[int, frozenset[str]] = {}  # id(route) -> its query parameters' names


def _query_names(dependant: Any) -> set[str]:
    """The query parameters of a route's dependant and of all its sub-dependencies."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _known(route: APIRoute) -> frozenset[str]:
    names = _KNOWN.get(id(route))
    if names is None:
        names = _KNOWN[id(route)] = frozenset(_query_names(route.dependant))
    return names


def checked(route: object, path: str) -> bool:
    """`path`: the request's (a route of an included router may know only its own part)."""
    return (isinstance(route, APIRoute) and route.include_in_schema
            and path.startswith("/v1/") and not path.startswith("/v1/agent/"))


async def refuse_unknown_query(request: HTTPConnection) -> None:
    """An app-wide dependency: runs after routing, before the route's own parameters. It
    takes an `HTTPConnection`, which FastAPI gives to websocket routes too (a `Request`
    parameter made the console's websocket a 500); only HTTP API routes are checked. Async:
    it does no I/O, and a plain function cost every request a worker-thread hop."""
    route = request.scope.get("route")
    if not checked(route, request.url.path):
        return
    assert isinstance(route, APIRoute)
    known = _known(route)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r} (this call takes: "
                             f"{takes})")
