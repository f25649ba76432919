"""The one error tree of Dockyard.

    DockyardError (500)
    ├── InvalidRequest (422)       a field value is wrong
    │   └── MalformedRequest (400) the body is not JSON / not the right shape
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
handler to `{"error": {"code": ..., "message": ...}}`; the agent decides retry by type.
"""

from __future__ import annotations


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
        DockyardError, InvalidRequest, MalformedRequest, Unauthorized, Forbidden, NotFound,
        Conflict, NoCapacity, NoValidHost, QuotaExceeded, PoolExhausted, BackendError,
        TemporaryError,
    )
}


def from_body(status: int, body: object) -> DockyardError:
    """Rebuild the error a Dockyard API answered with (used by the HTTP client)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = _BY_CODE.get(str(err.get("code")), DockyardError)
        exc = cls(str(err.get("message", "")))
        exc.status = status
        return exc
    exc = DockyardError(f"HTTP {status}: {str(body)[:200]}")
    exc.status = status
    return exc
