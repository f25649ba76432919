"""The agent API's socket listens before the agent registers (runtime.listening_socket).

Registering marks the host up, and the server may call the agent API at once; a connection
made before uvicorn serves waits in the backlog and is answered once it does, instead of
being refused (CI stop 24: "agent unreachable: Connection refused" for creates right after
`dockyard up`)."""

from __future__ import annotations

import socket

from dockyard.agent.runtime import listening_socket


def test_a_connection_before_serving_waits_and_is_answered() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        early = [socket.create_connection(sock.getsockname(), timeout=5) for _ in range(3)]
        for client in early:  # as the server would call while uvicorn is still starting
            client.sendall(b"ping")
        for client in early:  # the API starts serving: every early call is answered
            conn, _ = sock.accept()
            with conn:
                assert conn.recv(4) == b"ping"
                conn.sendall(b"pong")
            assert client.recv(4) == b"pong"
            client.close()
    finally:
        sock.close()
