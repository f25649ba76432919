"""The HTTP client of the Dockyard API, used by the CLI and by agents.

Errors come back as the same `dockyard.errors` classes the server raised, mapped by
`errors.from_reply` (the one mapping of every Dockyard HTTP client: this one and
`httpclient.HttpClient`, the base of the server's agent client), so callers handle one error
tree whether local or remote. Lists come back as `Page[T]`, items typed by the TypedDicts here.

The bytes travel through a `Transport`: `HttpxTransport` (a pooled, thread-safe httpx client:
the agent, the tests) by default; the CLI passes its own light one (`cli/transport.py`, the
standard library's http.client: a command starts without importing httpx, issue 18). A
transport answers `(status, body)` and raises `BackendError` when the server cannot be
reached; `ApiClient` alone turns error replies into the error tree.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Generic,
    Protocol,
    TypedDict,
    TypeVar,
    cast,
    overload,
)

from dockyard.errors import BackendError, DockyardError, from_reply

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


def client_context(ca: Path | str | None) -> ssl.SSLContext | bool:
    """What httpx's `verify=` and websockets' `ssl=` take: the cluster CA when given, else
    the system's trust store. (Here, not in `dockyard.tls`, so that a CLI command does not
    load `cryptography`.)"""
    if not ca:
        return True
    return ssl.create_default_context(cafile=str(ca))


class Transport(Protocol):
    """How `ApiClient` sends a request. `timeout`: the read timeout of this request (None:
    the transport's own); `content`: a raw body streamed from an iterator (`upload`)."""

    def send(self, method: str, path: str, *, params: dict[str, Any] | None, json: Any,
             content: Iterator[bytes] | None = None,
             timeout: float | None = None) -> tuple[int, bytes]: ...

    def open_stream(self, method: str, path: str, *, params: dict[str, Any] | None,
                    json: Any) -> AbstractContextManager[tuple[int, Iterator[bytes]]]: ...

    def close(self) -> None: ...


class HttpxTransport:
    """httpx: a connection pool, safe to share between the agent's threads."""

    def __init__(self, url: str, token: str, timeout: float, ca: Path | str | None,
                 transport: httpx.BaseTransport | None = None) -> None:
        """`transport`: httpx's own when None (unit tests: an httpx.MockTransport)."""
        import httpx
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout, verify=client_context(ca),
                                  headers={"Authorization": f"Bearer {token}"},
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        import httpx
        try:
            yield
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach Dockyard at {self.url}: {exc}") from exc

    def send(self, method: str, path: str, *, params: dict[str, Any] | None, json: Any,
             content: Iterator[bytes] | None = None,
             timeout: float | None = None) -> tuple[int, bytes]:
        import httpx
        kwargs: dict[str, Any] = {"params": params}
        if content is not None:  # a long upload: connect within 10 s, then wait `timeout`
            kwargs["content"] = content
            kwargs["timeout"] = httpx.Timeout(10.0, read=timeout)
        else:
            kwargs["json"] = json
            if timeout is not None:
                kwargs["timeout"] = timeout
        with self._reaching():
            resp = self._http.request(method, path, **kwargs)
        return resp.status_code, resp.content

    @contextmanager
    def open_stream(self, method: str, path: str, *, params: dict[str, Any] | None,
                    json: Any) -> Iterator[tuple[int, Iterator[bytes]]]:
        import httpx
        with self._reaching(), self._http.stream(
                method, path, params=params, json=json,
                timeout=httpx.Timeout(10.0, read=None)) as resp:
            yield resp.status_code, resp.iter_bytes()


def _body(status: int, content: bytes) -> Any:
    """The reply's JSON; an error reply (4xx/5xx) raised as its class of the error tree."""
    if status >= 400:
        raise from_reply(status, content)
    if status == 204 or not content:
        return None
    return json.loads(content)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `next` is the cursor of the following page (None: the last)."""
    items: list[T]
    next: str | None


class NetworkItem(TypedDict):
    """A network as `GET /v1/networks` lists it (model/network.py `Network`, in JSON)."""
    id: str
    name: str
    project: str
    subnet: str
    gateway: str
    dns: list[str]
    mode: str
    vlan: int | None
    shared: bool
    nat: bool
    bridge: str
    instances: int
    created_at: str


class VolumeItem(TypedDict):
    """A volume as `GET /v1/volumes` lists it (model/volume.py `Volume`, in JSON)."""
    id: str
    name: str
    project: str
    host: str | None
    docker_name: str
    attached_to: list[str]
    created_at: str


class ApiClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0,
                 ca: Path | str | None = None, transport: Transport | None = None) -> None:
        """`ca`: the cluster CA that signed an https server's certificate (None: the
        system's trust store). `transport`: how requests travel (default: httpx)."""
        self.url = url.rstrip("/")
        self._transport = transport or HttpxTransport(self.url, token, timeout, ca)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        status, content = self._transport.send(method, path, params=params, json=json,
                                               timeout=timeout)
        return _body(status, content)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, timeout: float | None = None,
             **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params or None, timeout=timeout)

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("PUT", path, json=body, params=params or None)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params or None)

    def page(self, path: str, item: type[T], **params: Any) -> Page[T]:
        """One page of the list at `path`; `item` types its entries (the API's JSON objects,
        not checked here: the server's OpenAPI document is the contract)."""
        reply = self.get(path, **params)
        if not isinstance(reply, dict) or not isinstance(reply.get("items"), list):
            raise DockyardError(f"GET {path}: not a list page: {str(reply)[:200]}")
        cursor = reply.get("next")
        return Page(items=cast(list[T], reply["items"]),
                    next=None if cursor is None else str(cursor))

    def pages(self, path: str, item: type[T], *, cursor: str = "after",
              **params: Any) -> Iterator[Page[T]]:
        """Every page of the list, following `next` cursors to the end. `cursor`: the query
        parameter that takes a page's `next` (`after`; the builds, newest first: `before`)."""
        mark = params.pop(cursor, None)
        while True:
            page = self.page(path, item, **params, **({cursor: mark} if mark else {}))
            yield page
            if not page.next:
                return
            mark = page.next

    @overload
    def list_all(self, path: str, item: type[T], *, cursor: str = "after",
                 **params: Any) -> list[T]: ...

    @overload
    def list_all(self, path: str, item: None = None, *, cursor: str = "after",
                 **params: Any) -> list[Any]: ...

    def list_all(self, path: str, item: type[Any] | None = None, *, cursor: str = "after",
                 **params: Any) -> list[Any]:
        """The whole list: the items of every page, typed as `item` when given."""
        return [entry for page in self.pages(path, item or dict, cursor=cursor, **params)
                for entry in page.items]

    def upload(self, path: str, data: BinaryIO, timeout: float = 3600.0, **params: Any) -> Any:
        """POST a file as the raw request body, streamed from disk (never read whole)."""
        status, content = self._transport.send(
            "POST", path, params=params, json=None,
            content=iter(lambda: data.read(1 << 16), b""), timeout=timeout)
        return _body(status, content)

    def stream(self, path: str, *, method: str = "GET", body: Any = None,
               **params: Any) -> Iterator[bytes]:
        with self._transport.open_stream(method, path, params=params, json=body) as (
                status, chunks):
            if status >= 400:
                _body(status, b"".join(chunks))
            yield from chunks


def trusted_by_system(url: str) -> bool:
    """Whether an https server's certificate passes the system's trust store (a public CA, or
    a TLS proxy in front of Dockyard)."""
    import httpx
    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=10)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return False
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    return True


def fetch_cluster_ca(url: str) -> str:
    """The cluster CA a server offers, fetched WITHOUT checking its certificate: trust it only
    after its fingerprint was checked (`dockyard login` shows it, as `lxc remote add` does)."""
    import httpx
    try:
        resp = httpx.get(f"{url.rstrip('/')}/v1/cluster/ca", timeout=10, verify=False)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    return str(_body(resp.status_code, resp.content)["pem"])
