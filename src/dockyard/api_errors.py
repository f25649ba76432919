"""One place that turns every failure of a Dockyard HTTP API (server or agent) into
`{"error": {"code", "message"}}`."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from dockyard.errors import DockyardError

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "malformed", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 415: "unsupported_media_type",
               422: "invalid"}


def _body(status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _describe(err: dict[str, object]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))  # type: ignore[attr-defined]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
ERROR_STATUSES = ("400", "401", "403", "404", "409", "415", "422")


def document(app: FastAPI) -> None:
    """Declare the error body in the OpenAPI document: every operation may answer the 4xx
    above with `Error` (FastAPI's own 422 `HTTPValidationError` is never sent, see
    `install`)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
            error = {"description": "refused: see error.code and error.message",
                     "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Error"}}}}
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.setdefault("responses", {})
                    responses.update({status: error for status in ERROR_STATUSES})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _allowed(request: Request) -> list[str]:
    """The methods some route of the app serves at this request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(DockyardError)
    async def _dockyard(_: Request, exc: DockyardError) -> JSONResponse:
        return _body(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") in ("json_invalid", "model_attributes_type") or
               (e.get("type") == "dict_type" and tuple(e.get("loc", ())) == ("body",))
               for e in errors):
            return _body(400, "malformed", "the request body is not a JSON object of the "
                         "expected shape: " + "; ".join(_describe(e) for e in errors))
        return _body(422, "invalid", "; ".join(_describe(e) for e in errors))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own refusals; their headers stay, and a 405's `Allow` (RFC 9110)
        names the methods of every route of the path (Starlette's names only the first)."""
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(request))
        return _body(exc.status_code, code, str(exc.detail), headers or None)

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return _body(400, "malformed", f"the request body is not valid JSON: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _body(500, "internal", f"internal error: {type(exc).__name__}")
