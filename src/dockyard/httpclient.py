"""The httpx base of the server's clients of Dockyard APIs (server/agent_proxy.AgentClient,
one host's agent API): bearer-token JSON calls, streams, one pooled transport (unit tests: an
httpx.MockTransport, the fake's seam), and the one error mapping of every Dockyard HTTP client,
`errors.from_reply` (a reply >= 400 → the class its `{"error": {...}}` body names; a transport
failure → BackendError naming the peer).

Not imported by the CLI (a user command starts without httpx, issue 18): `client.ApiClient`
sends through its `Transport` (httpx lazily, or the CLI's http.client one) and maps replies with
the same `from_reply`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import httpx

from dockyard.errors import BackendError, from_reply

Timeout = float | httpx.Timeout | None
# Streams wait as long as the peer keeps sending; connecting and writing are still bounded.
STREAM = httpx.Timeout(10.0, read=None)


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
