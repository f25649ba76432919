"""PromptServer: shutdown does not wait for an idle keep-alive TLS client (one that never reads
again, like a pooled httpx connection) to answer the TLS close_notify."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from dockyard.serving import PromptServer
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


def test_shutdown_does_not_wait_for_an_idle_tls_client(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path)
    ensure_ca(files)
    ensure_server_cert(files, ["127.0.0.1"])
    app = FastAPI()
    app.get("/ping")(lambda: "pong")
    called = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ssl_certfile=files.cert,
                            ssl_keyfile=files.key, timeout_graceful_shutdown=60)
    server = PromptServer(config, on_shutdown=called.set)
    thread = _serve(server, sock)
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    client = _idle_keep_alive_client(sock.getsockname()[1], files.ca)
    try:
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
