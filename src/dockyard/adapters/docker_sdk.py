"""The docker SDK's edge: error translation and the few private SDK calls, in one place.

`translate` maps every docker/requests exception to the error tree, and the engine's modules
(`docker_containers`, `docker_images`, `docker_exec`, `docker_checkpoints`,
`docker_volumes`, through `docker_engine`) use no other: ImageNotFound/NotFound -> NotFound,
409 -> Conflict, connection trouble -> TemporaryError, anything else -> BackendError.

Private SDK use (the low-level `APIClient`'s underscored helpers and `requests`/`http.client`
internals) is confined to this module, because the SDK has no public call for:
* `post_json`: `POST /containers/ID/update` with a `RestartPolicy` or `PidsLimit` body
  (`APIClient.update_container` knows neither) and `POST /containers/ID/checkpoints`
  (`docker checkpoint create`: no SDK method);
* `post_query`: `POST /containers/ID/start?checkpoint=…` (`docker start --checkpoint`);
* `hijack_exec_start` and `hijacked_stream`: an interactive exec needs the hijacked socket
  *and* the bytes http.client already buffered with the 101 answer; the SDK's
  `exec_start(socket=True)` hands out the bare socket and loses them.
* `post_build` and `shut_stream`: the classic builder's `POST /build` whose streaming
  response is kept, so another thread can end the build by shutting its socket (dockerd
  cancels a build whose client went away and kills its RUN container); the SDK's `build`
  hands out only a generator.
Each is pinned by the docker SDK version in pyproject.toml and covered by integration tests
(live migration for the checkpoint calls, the console for the exec stream).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker.errors
import requests

from dockyard.errors import BackendError, Conflict, NotFound, TemporaryError

__all__ = ["hijack_exec_start", "hijacked_stream", "post_build", "post_json", "post_query",
           "raise_stream_error", "shut_stream", "translate"]


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Run an SDK call; its failure surfaces as a Dockyard error naming `what`."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise NotFound(f"{what}: image not found: {exc.explanation}") from exc
    except docker.errors.NotFound as exc:
        raise NotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"{what}: {exc.explanation}") from exc
        raise BackendError(f"{what}: {exc.explanation or exc}") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TemporaryError(f"{what}: dockerd unreachable: {exc}", delay=1.0) from exc
    except docker.errors.DockerException as exc:
        raise BackendError(f"{what}: {exc}") from exc


def raise_stream_error(what: str, message: dict[str, Any]) -> None:
    """An error dockerd reports inside a progress stream (pull, push, load) raises."""
    if message.get("error"):
        raise BackendError(f"{what}: {message['error']}")


def post_json(api: Any, path: str, name: str, body: dict[str, Any]) -> None:
    """POST `body` as JSON to `path` ("/containers/{0}/update") for container `name`."""
    api._raise_for_status(api._post_json(api._url(path, name), data=body))


def post_query(api: Any, path: str, name: str, params: dict[str, str]) -> None:
    """POST with query `params` and no body to `path` for container `name`."""
    api._raise_for_status(api._post(api._url(path, name), params=params))


def hijack_exec_start(api: Any, exec_id: str, tty: bool) -> Any:
    """`POST /exec/ID/start` upgraded to a raw stream; the `requests.Response` (the caller
    closes it). As the SDK's `exec_start(socket=True)`, but the response is kept."""
    response = api.post(api._url("/exec/{0}/start", exec_id),
                        json={"Tty": tty, "Detach": False}, stream=True,
                        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                        timeout=api.timeout)
    return _checked(api, response)


def hijacked_stream(response: Any) -> tuple[Any, socket.socket]:
    """(http.client's buffered reader over the hijacked connection, its socket). Output that
    arrived together with the 101 answer sits in the reader's buffer, not in the socket, so
    reads go through the reader and writes to the socket."""
    reader = response.raw._fp.fp  # io.BufferedReader over the connection
    sock: socket.socket = reader.raw._sock
    return reader, sock


def post_build(api: Any, params: dict[str, Any], context: Any) -> Any:
    """`POST /build` with a tar `context` (a file object); the streaming `requests.Response`
    (the caller closes it). No read timeout: the build's own limit ends it."""
    response = api._post(api._url("/build"), params=params, data=context, stream=True,
                         timeout=None, headers={"Content-Type": "application/x-tar"})
    return _checked(api, response)


def _checked(api: Any, response: Any) -> Any:
    """A streaming response whose status is an error: closed, and the SDK's APIError raised."""
    try:
        api._raise_for_status(response)
    except docker.errors.APIError:
        response.close()
        raise
    return response


def shut_stream(response: Any) -> None:
    """From any thread: shut a streaming response's socket both ways, so the reader's
    blocked read returns and dockerd sees its client gone."""
    try:
        sock: socket.socket = response.raw._fp.fp.raw._sock
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):  # already closed
        pass
