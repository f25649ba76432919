"""The one error tree of Dockyard.

    DockyardError (500)
    ├── InvalidRequest (422)       a field value is wrong
    │   ├── MalformedRequest (400) the body is not JSON / not the right shape
    │   └── PayloadTooLarge (413)  the body is over the endpoint's limit
    ├── Unauthorized (401)         no token or an unknown one
    ├── Forbidden (403)            the token's role may not do this
    ├── NotFound (404)             unknown object (or another project's)
    ├── Conflict (409)             duplicate name, IP in use, busy, wrong state
    │   ├── RetryableConflict (409) lost a race (version CAS, a core or address taken
    │   │                          meanwhile, a serialization failure): the same request may
    │   │                          succeed when run again from a fresh read
    │   ├── NoCapacity (409)       cores / memory / pids do not fit on the host
    │   ├── NoValidHost (409)      the scheduler found no host, with counts per reason
    │   ├── QuotaExceeded (409)    the project's quota does not allow it (with the numbers)
    │   └── PoolExhausted (409)    no free address in the network
    └── BackendError (502)         Docker, netlink or an agent failed
        └── TemporaryError (503)   worth retrying after `delay` seconds

Each class carries its HTTP status and a stable machine code. The server maps them in one
handler to `{"error": {"code": ..., "message": ...}}` (api_errors.py); every HTTP client maps a
reply back with `from_reply` (client.py's one seam); the agent decides retry by type.
"""

from __future__ import annotations

import json


class DockyardError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(DockyardError):
    status = 422
    code = "invalid"


class MalformedRequest(InvalidRequest):
    status = 400
    code = "malformed"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "too_large"


class Unauthorized(DockyardError):
    status = 401
    code = "unauthorized"


class Forbidden(DockyardError):
    status = 403
    code = "forbidden"


class NotFound(DockyardError):
    status = 404
    code = "not_found"


class Conflict(DockyardError):
    status = 409
    code = "conflict"


class RetryableConflict(Conflict):
    """A write lost to a concurrent one; `server.placement.placing` runs its work again.
    Same code on the wire as Conflict: a client sees a 409 conflict either way."""


class NoCapacity(Conflict):
    code = "no_capacity"


class NoValidHost(Conflict):
    code = "no_valid_host"


class QuotaExceeded(Conflict):
    code = "quota_exceeded"


class PoolExhausted(Conflict):
    code = "pool_exhausted"


class BackendError(DockyardError):
    status = 502
    code = "backend"


class TemporaryError(BackendError):
    status = 503
    code = "temporary"

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


_BY_CODE: dict[str, type[DockyardError]] = {
    cls.code: cls
    for cls in (
        DockyardError, InvalidRequest, MalformedRequest, PayloadTooLarge, Unauthorized,
        Forbidden, NotFound, Conflict, NoCapacity, NoValidHost, QuotaExceeded, PoolExhausted,
        BackendError, TemporaryError,
    )
}


# The class a reply without a Dockyard error body stands for, by its HTTP status (a proxy's
# 502 page, a refused websocket handshake): the most general class of the tree with that status.
BY_STATUS: dict[int, type[DockyardError]] = {
    cls.status: cls
    for cls in (MalformedRequest, Unauthorized, Forbidden, NotFound, Conflict, InvalidRequest,
                PayloadTooLarge, BackendError, TemporaryError)
}


def from_reply(status: int, body: bytes | str | object) -> DockyardError:
    """The error an HTTP reply stands for: the one place that maps a reply of a Dockyard API
    (server or agent) back to this tree. `body` is the raw body (bytes or text, parsed as
    JSON here) or an already parsed one (a console error frame). A body
    `{"error": {"code", "message"}}` gives the class of its code; any other body the class
    of the status (`BY_STATUS`, else DockyardError) with "HTTP <status>: <body>" as message.
    The error keeps the reply's status."""
    if isinstance(body, bytes | str):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        exc = _BY_CODE.get(str(err.get("code")), DockyardError)(str(err.get("message", "")))
    else:
        exc = BY_STATUS.get(status, DockyardError)(f"HTTP {status}: {str(body)[:200]}")
    exc.status = status
    return exc
