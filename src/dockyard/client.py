"""The HTTP seam of Dockyard: the client of the server's API (the CLI's and the agents') and
the base of every client of a Dockyard API (the server's calls to agents subclass it too).

    HttpClient ── one httpx transport (production: httpx's, TLS checked against `verify`;
    │              unit tests: an httpx.MockTransport — the fake's seam)
    │             one error mapping: a reply >= 400 → `errors.from_reply` (the class its
    │              `{"error": {...}}` body names), a transport failure → BackendError naming
    │              the peer
    ├── ApiClient                   the server's API; lists come back as `Page[T]`
    └── server/agent_proxy.AgentClient   one host's agent API

Errors come back as the same `dockyard.errors` classes the server raised, so callers handle
one error tree whether local or remote. Only httpx and the standard library are imported here
(no pydantic): the CLI loads this module for every command that calls the server.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypedDict, TypeVar, cast, overload

import httpx

from dockyard.errors import BackendError, DockyardError, from_reply

T = TypeVar("T")
Timeout = float | httpx.Timeout | None
# Streams wait as long as the peer keeps sending; connecting and writing are still bounded.
STREAM = httpx.Timeout(10.0, read=None)


def client_context(ca: Path | str | None) -> ssl.SSLContext | bool:
    """What httpx's `verify=` and websockets' `ssl=` take: the cluster CA when given, else
    the system's trust store. (Here, not in `dockyard.tls`, so that a CLI command does not
    load `cryptography`.)"""
    if not ca:
        return True
    return ssl.create_default_context(cafile=str(ca))


def reply_of(resp: httpx.Response) -> Any:
    """A read reply's JSON (None when empty), or the error it stands for."""
    if resp.status_code >= 400:
        raise from_reply(resp.status_code, resp.content)
    return resp.json() if resp.content else None


class HttpClient:
    """Bearer-token JSON calls to one peer through one httpx transport.

    `http`: a client (connection pool) shared with other HttpClients, which its owner closes;
    without one this client has its own, built on `transport`. The async calls (streams the
    server relays) open an AsyncClient per call: on `transport` when it also serves async
    requests (httpx.MockTransport does), else on httpx's own."""

    def __init__(self, url: str, token: str, *, unreachable: str, timeout: Timeout,
                 verify: ssl.SSLContext | bool = True,
                 transport: httpx.BaseTransport | None = None,
                 http: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.verify = verify
        self.unreachable = unreachable
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"}
        self._transport = transport
        self._owned = http is None
        self._http = http or httpx.Client(timeout=timeout, verify=verify, transport=transport)

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def _url(self, path: str) -> str:
        return self.url + path

    def _failed(self, exc: httpx.HTTPError, what: str | None = None) -> BackendError:
        return BackendError(f"{what or self.unreachable}: {exc}")

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None, content: Any = None,
                timeout: Timeout = None) -> Any:
        """The reply's JSON (None when empty). `timeout`: None for this client's."""
        try:
            resp = self._http.request(method, self._url(path), json=json, params=params,
                                      content=content, headers=self._headers,
                                      timeout=timeout or self._timeout)
        except httpx.HTTPError as exc:
            raise self._failed(exc) from exc
        return reply_of(resp)

    def chunks(self, method: str, path: str, *, json: Any = None,
               params: Mapping[str, Any] | None = None, timeout: Timeout = None,
               what: str | None = None) -> Iterator[bytes]:
        """The reply's body as it arrives; an error reply raises at the first `next`."""
        try:
            with self._http.stream(method, self._url(path), json=json, params=params,
                                   headers=self._headers,
                                   timeout=timeout or self._timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    reply_of(resp)
                yield from resp.iter_bytes()
        except httpx.HTTPError as exc:
            raise self._failed(exc, what) from exc

    def _async_client(self, timeout: Timeout) -> httpx.AsyncClient:
        transport = (self._transport if isinstance(self._transport, httpx.AsyncBaseTransport)
                     else None)
        return httpx.AsyncClient(timeout=timeout or self._timeout, verify=self.verify,
                                 transport=transport)

    async def arequest(self, method: str, path: str, *, json: Any = None,
                       params: Mapping[str, Any] | None = None, content: Any = None,
                       timeout: Timeout = None, what: str | None = None) -> Any:
        """`request` from the event loop (a request body streamed from an async iterator)."""
        async with self._async_client(timeout) as client:
            try:
                resp = await client.request(method, self._url(path), json=json, params=params,
                                            content=content, headers=self._headers)
            except httpx.HTTPError as exc:
                raise self._failed(exc, what) from exc
        return reply_of(resp)

    async def open_stream(self, method: str, path: str, *, json: Any = None,
                          params: Mapping[str, Any] | None = None,
                          interrupted: str | None = None) -> AsyncGenerator[bytes, None]:
        """Start a streamed call: an error reply (before the first byte) raises here; the
        body then comes from the returned generator, whose end closes the connection."""
        client = self._async_client(STREAM)
        request = client.build_request(method, self._url(path), json=json, params=params,
                                       headers=self._headers)
        try:
            resp = await client.send(request, stream=True)
            if resp.status_code >= 400:
                await resp.aread()
        except httpx.HTTPError as exc:
            await client.aclose()
            raise self._failed(exc) from exc
        if resp.status_code >= 400:
            await client.aclose()
            reply_of(resp)

        async def body() -> AsyncGenerator[bytes, None]:
            try:
                async for chunk in resp.aiter_bytes():
                    yield chunk
            except httpx.HTTPError as exc:
                raise self._failed(exc, interrupted) from exc
            finally:
                await resp.aclose()
                await client.aclose()

        return body()


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


class ApiClient(HttpClient):
    """The server's API, for the CLI and the agents."""

    def __init__(self, url: str, token: str, timeout: float = 60.0,
                 ca: Path | str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        """`ca`: the cluster CA that signed an https server's certificate (None: the
        system's trust store). `transport`: httpx's own when None."""
        super().__init__(url, token, unreachable=f"cannot reach Dockyard at {url.rstrip('/')}",
                         timeout=timeout, verify=client_context(ca), transport=transport)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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

    def pages(self, path: str, item: type[T], **params: Any) -> Iterator[Page[T]]:
        """Every page of the list, following `next` cursors (`after=`) to the end."""
        after = params.pop("after", None)
        while True:
            page = self.page(path, item, **params, **({"after": after} if after else {}))
            yield page
            if not page.next:
                return
            after = page.next

    @overload
    def list_all(self, path: str, item: type[T], **params: Any) -> list[T]: ...

    @overload
    def list_all(self, path: str, item: None = None, **params: Any) -> list[Any]: ...

    def list_all(self, path: str, item: type[Any] | None = None, **params: Any) -> list[Any]:
        """The whole list: the items of every page, typed as `item` when given."""
        return [entry for page in self.pages(path, item or dict, **params)
                for entry in page.items]

    def upload(self, path: str, data: BinaryIO, timeout: float = 3600.0, **params: Any) -> Any:
        """POST a file as the raw request body, streamed from disk (never read whole)."""
        return self.request("POST", path, content=iter(lambda: data.read(1 << 16), b""),
                            params=params, timeout=httpx.Timeout(10.0, read=timeout))

    def stream(self, path: str, *, method: str = "GET", body: Any = None,
               **params: Any) -> Iterator[bytes]:
        return self.chunks(method, path, json=body, params=params, timeout=STREAM)


def trusted_by_system(url: str) -> bool:
    """Whether an https server's certificate passes the system's trust store (a public CA, or
    a TLS proxy in front of Dockyard)."""
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
    try:
        resp = httpx.get(f"{url.rstrip('/')}/v1/cluster/ca", timeout=10, verify=False)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    return str(reply_of(resp)["pem"])
