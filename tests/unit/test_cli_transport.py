"""The CLI's stdlib transport (cli/transport.py) behaves as the httpx one it replaced.

Each check runs `ApiClient` over both transports against a real HTTP(S) server on loopback
(http.server in a thread, TLS with a cluster CA made by dockyard.tls): what the server
receives (method, path, query, headers, body) and what the caller gets back (JSON, error
classes, streamed chunks) must be the same. TLS: the cluster CA is required, the host name is
checked. A connection the server closed while idle is opened again.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dockyard import tls
from dockyard.cli import config as cli_config
from dockyard.cli.transport import StdlibTransport, query_string
from dockyard.client import ApiClient, HttpxTransport
from dockyard.errors import BackendError, Conflict, DockyardError, NotFound


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    close_idle: threading.Event = field(default_factory=threading.Event)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    server_state: Server

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b""
            while size := int(self.rfile.readline().strip(), 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes, chunked: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:5], body[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()
        if self.server_state.close_idle.is_set():
            self.close_connection = True  # the connection ends after the reply, unannounced

    def _handle(self) -> None:
        state = self.server_state
        state.connections.add(self.client_address)
        body = self._body()
        state.seen.append(Seen(self.command, self.path, dict(self.headers), body))
        if self.path.startswith("/prefix/v1/missing"):
            self._reply(404, json.dumps({"error": {"code": "not_found",
                                                   "message": "no instance web"}}).encode())
        elif self.path.startswith("/prefix/v1/busy"):
            self._reply(409, json.dumps({"error": {"code": "conflict",
                                                   "message": "busy"}}).encode())
        elif self.path.startswith("/prefix/v1/plain-error"):
            self._reply(502, b"bad gateway")
        elif self.path.startswith("/prefix/v1/empty"):
            self.send_response(204)
            self.end_headers()
        elif self.path.startswith("/prefix/v1/stream"):
            self._reply(200, b"line one\nline two\n", chunked=True)
        else:
            self._reply(200, json.dumps({"echo": body.decode() or None}).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def serve(tmp_path: Path, https: bool) -> Iterator[tuple[Server, Path | None]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ca: Path | None = None
    scheme = "http"
    if https:
        files = tls.TlsFiles(tmp_path / "tls")
        files.dir.mkdir(parents=True)
        tls.ensure_ca(files)
        tls.ensure_server_cert(files, ["127.0.0.1"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert, files.key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        ca, scheme = files.ca, "https"
    state = Server(f"{scheme}://127.0.0.1:{httpd.server_address[1]}/prefix")
    handler = type("BoundHandler", (Handler,), {"server_state": state})
    httpd.RequestHandlerClass = handler
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, ca
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


Make = Callable[[str, Path | None], ApiClient]
TRANSPORTS: dict[str, Make] = {
    "httpx": lambda url, ca: ApiClient(url, "tok", timeout=10, ca=ca),
    "stdlib": lambda url, ca: ApiClient(url, "tok", timeout=10, ca=ca,
                                        transport=StdlibTransport(url, "tok", 10, ca)),
}


@pytest.fixture(params=[False, True], ids=["http", "https"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Path | None]]:
    yield from serve(tmp_path, request.param)


def exchange(make: Make, server: Server, ca: Path | None) -> tuple[list[Any], list[Seen]]:
    """One of everything a command does; what came back and what the server saw."""
    results: list[Any] = []
    with make(server.url, ca) as api:
        results.append(api.get("/v1/instances", project=None, all=True, limit=5,
                               tag=["a", "b c"]))
        results.append(api.post("/v1/instances", {"name": "wëb", "n": 1}, explain="true"))
        results.append(api.request("PATCH", "/v1/instances/web", json={"limits": {}}))
        results.append(api.put("/v1/q", None))
        results.append(api.delete("/v1/empty"))
        for path, error in (("/v1/missing", NotFound), ("/v1/busy", Conflict),
                            ("/v1/plain-error", DockyardError)):
            with pytest.raises(error) as caught:
                api.get(path)
            results.append((type(caught.value).__name__, caught.value.message))
        results.append(api.upload("/v1/upload", io.BytesIO(b"x" * 200_000), name="img"))
        results.append(b"".join(api.stream("/v1/stream", follow="true")))
        with pytest.raises(NotFound):
            list(api.stream("/v1/missing"))
    # What differs by design: httpx's own headers (user agent, encodings it can decode).
    seen = [Seen(s.method, s.path, {k.lower(): v for k, v in s.headers.items()
                                    if k.lower() in ("authorization", "content-type", "host")},
                 s.body) for s in server.seen]
    return results, seen


def test_the_stdlib_transport_sends_and_answers_as_httpx(tmp_path: Path) -> None:
    outcomes = {}
    for name, make in TRANSPORTS.items():
        for https in (False, True):
            for state, ca in serve(tmp_path / f"{name}-{https}", https):
                results, seen = exchange(make, state, ca)
                host = state.url.split("/")[2]
                outcomes[name, https] = (results, [(s.method, s.path, s.headers.get("host") ==
                                                    host, s.headers.get("authorization"),
                                                    s.headers.get("content-type"),
                                                    json.loads(s.body) if s.headers.get(
                                                        "content-type") == "application/json"
                                                    else s.body) for s in seen])
    for https in (False, True):
        assert outcomes["stdlib", https] == outcomes["httpx", https]
    results, seen = outcomes["stdlib", True]
    assert seen[0][1] == "/prefix/v1/instances?project=&all=true&limit=5&tag=a&tag=b+c"
    assert seen[0][2:4] == (True, "Bearer tok")
    assert seen[1][5] == {"name": "wëb", "n": 1}
    assert results[5:8] == [("NotFound", "no instance web"), ("Conflict", "busy"),
                            ("BackendError", "HTTP 502: bad gateway")]
    assert results[9] == b"line one\nline two\n"
    assert seen[8][5] == b"x" * 200_000  # the upload arrived whole, chunked


def test_one_connection_serves_a_command_and_is_opened_again_after_an_idle_close(
        server: tuple[Server, Path | None]) -> None:
    state, ca = server
    with TRANSPORTS["stdlib"](state.url, ca) as api:
        for _ in range(3):
            api.get("/v1/instances")
        assert len(state.connections) == 1
        state.close_idle.set()  # the server ends the connection after its next reply
        api.get("/v1/instances")
        api.get("/v1/instances")  # on a connection the server closed: opened again
    assert len(state.seen) == 5 and len(state.connections) >= 2


def get_instances(url: str, ca: Path | None) -> Any:
    with TRANSPORTS["stdlib"](url, ca) as api:
        return api.get("/v1/instances")


def test_tls_needs_the_cluster_ca_and_the_right_host_name(tmp_path: Path) -> None:
    for state, ca in serve(tmp_path, https=True):
        url = state.url
        with pytest.raises(BackendError, match="cannot reach Dockyard at .*CERTIFICATE_VERIFY"):
            get_instances(url, None)
        other = tls.TlsFiles(tmp_path / "other")
        other.dir.mkdir()
        tls.ensure_ca(other)
        with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
            get_instances(url, other.ca)
        by_name = url.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1 only
        with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
            get_instances(by_name, ca)
        assert get_instances(url, ca) == {"echo": None}


def test_an_unreachable_server_is_one_backend_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        url = f"http://127.0.0.1:{port}"
        with pytest.raises(BackendError, match=f"cannot reach Dockyard at {url}: .*refused"):
            get_instances(url, None)
    with pytest.raises(BackendError, match="not an http"):
        StdlibTransport("ftp://127.0.0.1", "t", 1, None)


def test_query_strings_are_encoded_as_httpx_encodes_them() -> None:
    import httpx
    params = {"a": True, "b": False, "c": None, "d": 3, "e": ["x", "y z"], "f": "ä&="}
    assert query_string(params) == "?" + str(httpx.QueryParams(params))
    assert query_string({}) == query_string(None) == ""


def test_the_cli_keeps_httpx_when_a_proxy_is_configured(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setenv("DOCKYARD_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DOCKYARD_TOKEN", "t")
    for var in ("https_proxy", "http_proxy", "all_proxy", "HTTPS_PROXY", "HTTP_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(cli_config.client()._transport, StdlibTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert isinstance(cli_config.client()._transport, HttpxTransport)
