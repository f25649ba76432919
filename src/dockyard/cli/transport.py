"""The CLI's HTTP transport: the standard library's http.client, one connection at a time.

A command is one short process on one thread, so it needs neither httpx's pool nor its
thread safety, and importing httpx (with httpcore and h11) was a third of a command's start-up
(issue 18). This transport keeps what the CLI relied on from httpx:
  * TLS checked the same way: against the cluster CA when one is configured, else against
    `SSL_CERT_FILE` / `SSL_CERT_DIR` or certifi's bundle (httpx's default trust store), with
    the host name checked;
  * query strings encoded as httpx does (`True` → `true`, `None` → empty, lists repeated);
  * a connection reused between the requests of one command (a cursor walk) and opened again
    once when the server closed it while idle;
  * every failure to reach the server is a `BackendError("cannot reach Dockyard at URL: …")`.
Proxies (`HTTPS_PROXY` …) are httpx's business: `config.client()` keeps httpx when one is set.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from dockyard.errors import BackendError

CONNECT_TIMEOUT = 10.0  # as httpx.Timeout(10.0, read=…) for uploads and streams
PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")


def proxy_configured() -> bool:
    """Whether the environment names a proxy (httpx would honour it, this transport not)."""
    return any(os.environ.get(v) or os.environ.get(v.upper()) for v in PROXY_VARIABLES)


def tls_context(ca: Path | str | None) -> ssl.SSLContext:
    """The context httpx builds for `verify=client_context(ca)`: the cluster CA, else the
    environment's or certifi's trust store."""
    if ca:
        return ssl.create_default_context(cafile=str(ca))
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi
    return ssl.create_default_context(cafile=certifi.where())


def _query_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def query_string(params: dict[str, Any] | None) -> str:
    """`?a=1&b=true`, as httpx encodes `params=` (empty when there are none)."""
    pairs = [(key, _query_value(item)) for key, value in (params or {}).items()
             for item in (value if isinstance(value, list | tuple) else [value])]
    return "?" + urlencode(pairs) if pairs else ""


class StdlibTransport:
    """`dockyard.client.Transport` over http.client (see the module docstring)."""

    def __init__(self, url: str, token: str, timeout: float, ca: Path | str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"cannot reach Dockyard at {url}: not an http(s) URL")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._context = tls_context(ca) if self._https else None
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "*/*",
                         "User-Agent": "dockyard-cli"}
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, connect_timeout: float,
                 read_timeout: float | None) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, context=self._context,
                                               timeout=connect_timeout)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_timeout)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)
        except BaseException:
            conn.close()  # a refused handshake leaves a socket behind otherwise
            raise
        return conn

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
            self.close()
            raise BackendError(f"cannot reach Dockyard at {self.url}: "
                               f"{exc or type(exc).__name__}") from exc

    def _request(self, conn: http.client.HTTPConnection, method: str, path: str,
                 params: dict[str, Any] | None, json_body: Any,
                 content: Iterator[bytes] | None) -> http.client.HTTPResponse:
        headers = dict(self._headers)
        body: bytes | Iterator[bytes] | None = None
        if content is not None:
            body = content
            headers["Transfer-Encoding"] = "chunked"
        elif json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        conn.request(method, self._prefix + path + query_string(params), body=body,
                     headers=headers, encode_chunked=content is not None)
        return conn.getresponse()

    def send(self, method: str, path: str, *, params: dict[str, Any] | None, json: Any,
             content: Iterator[bytes] | None = None,
             timeout: float | None = None) -> tuple[int, bytes]:
        read_timeout = self._timeout if timeout is None else timeout
        # as httpx: one timeout for every phase; an upload connects within 10 s
        connect_timeout = CONNECT_TIMEOUT if content is not None else read_timeout
        with self._reaching():
            reused = self._conn is not None and content is None  # a streamed body: once
            if self._conn is None or content is not None:
                self.close()
                self._conn = self._connect(connect_timeout, read_timeout)
            conn = self._conn
            if conn.sock is not None:
                conn.sock.settimeout(read_timeout)
            try:
                resp = self._request(conn, method, path, params, json, content)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed the idle connection between two requests: open anew.
                self.close()
                self._conn = conn = self._connect(connect_timeout, read_timeout)
                resp = self._request(conn, method, path, params, json, content)
            data = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, data

    @contextmanager
    def open_stream(self, method: str, path: str, *, params: dict[str, Any] | None,
                    json: Any) -> Iterator[tuple[int, Iterator[bytes]]]:
        """A reply read as it arrives (logs --follow, a push's progress): its own
        connection, connect within 10 s, no read timeout."""
        with self._reaching():
            conn = self._connect(CONNECT_TIMEOUT, None)
        try:
            with self._reaching():
                resp = self._request(conn, method, path, params, json, None)
            yield resp.status, self._chunks(resp)  # the caller's errors stay its own
        finally:
            conn.close()

    def _chunks(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        with self._reaching():
            while chunk := resp.read1(1 << 16):
                yield chunk
