"""PromptServer: shutdown does not wait for an idle keep-alive TLS client (one that never reads
again, like a pooled httpx connection) to answer the TLS close_notify."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from dockyard.serving import KEEP_ALIVE, PromptServer
from dockyard.tls import TlsFiles, ensure_ca, ensure_server_cert


def _serve(server: uvicorn.Server, sock: socket.socket) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    return thread


def _idle_keep_alive_client(port: int, ca: Path) -> ssl.SSLSocket:
    """One request on a keep-alive TLS connection, then silence (never read, never close)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                           server_hostname="127.0.0.1")
    conn.settimeout(30)
    conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    while not reply.endswith(b'"pong"'):
        reply += conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200") and b"connection: close" not in reply.lower()
    return conn


# the aborted connection's TCP transport, already detached from its TLS protocol by asyncio's
# shutdown handshake, is only freed by the garbage collector (a server process exits anyway)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("idle_for", [0.0, 2.0], ids=["closed-at-shutdown",
                                                     "closed-by-keep-alive-timeout"])
def test_shutdown_does_not_wait_for_an_idle_tls_client(tmp_path: Path, idle_for: float) -> None:
    files = TlsFiles(tmp_path)
    ensure_ca(files)
    ensure_server_cert(files, ["127.0.0.1"])
    app = FastAPI()
    app.get("/ping")(lambda: "pong")
    called = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ssl_certfile=files.cert,
                            ssl_keyfile=files.key, timeout_graceful_shutdown=60,
                            timeout_keep_alive=1)
    server = PromptServer(config, on_shutdown=called.set)
    thread = _serve(server, sock)
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    client = _idle_keep_alive_client(sock.getsockname()[1], files.ca)
    try:
        time.sleep(idle_for)  # the client stays silent (after 1 s uvicorn closes it itself)
        stopped = time.monotonic()
        server.should_exit = True
        thread.join(timeout=40)
        took = time.monotonic() - stopped
        # plain uvicorn waits for the client's close_notify: asyncio's 30 s TLS shutdown
        # timeout (the graceful timeout here is 60 s); PromptServer aborts it after LINGER
        assert not thread.is_alive() and took < 15, f"shutdown took {took:.1f}s"
        assert called.is_set()
    finally:
        client.close()
        sock.close()
        # free the aborted transport's socket now, inside this test's warning filter, not
        # in whichever later test the collector happens to run
        gc.collect()


def test_an_idle_connection_is_closed_by_the_client_side_first() -> None:
    """The servers keep an idle connection longer than an httpx pool does (its default
    `keepalive_expiry`), so a pooled request never races the server's close (a 502 "Server
    disconnected without sending a response" through the agent proxy, found by make soak)."""
    import httpx

    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None and 2 * expiry <= KEEP_ALIVE
