"""The server's one client of the agents' API: exec, logs, top, usage, image checks, pushes
and loads, volume removal, the host doctor, and the transfers of snapshots and migrations
(agent/api.py, agent/transfer.py and agent/live.py serve them).

    AgentProxy (ctx.agents) ── one httpx transport, pooled, TLS checked against the cluster CA
        .to(host, url, secret) ─▶ AgentClient ── httpclient.HttpClient: one error mapping
    host_target(ctx, sess, host_id, what) ─▶ the AgentClient of an instance's host (409 when
        that host is not up)

The agent's API URL and secret come from its registration; the server presents the secret as
a bearer token. A host without an API URL (added, never registered) is a 409; transport
failures are BackendError (502) with the host's name; the agent's own error replies come back
as the error it raised. In a TLS cluster agents serve https with a certificate the cluster CA
signed at registration, and every call here (and the console relay) verifies it against that
CA only. Archives and image uploads are streamed (from a file or a request body into the
agent, or from the agent into a file), never whole in memory.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.orm import Session

from dockyard.client import client_context
from dockyard.errors import Conflict, DockyardError
from dockyard.httpclient import HttpClient
from dockyard.model.doctor import CheckResult
from dockyard.model.instance import ExecRequest, ExecResult, Usage
from dockyard.store.tables import HostRow

if TYPE_CHECKING:
    from dockyard.server.context import ServerContext

LONG = httpx.Timeout(10.0, read=600.0, write=600.0)  # transfers: commits, archives, pulls
SHORT = 30.0  # the calls a user waits on: exec (its own), logs, top, usage, checks
# A client built on its own keeps no idle connection: nothing is left open when it goes.
ONE_SHOT = httpx.Limits(max_keepalive_connections=0)


def agent_url(host: str, url: str, path: str) -> str:
    """The agent's URL for `path`; 409 while the host's agent has never registered (a host
    that was only added has no API address yet)."""
    if not url:
        raise Conflict(f"host {host} has no agent yet: start `dockyard agent` there with the "
                       "token `dockyard host add` printed")
    return url.rstrip("/") + path


class AgentClient(HttpClient):
    """One host's agent. Built by `AgentProxy.to` (the server's pooled transport), or on its
    own (a connection per call, closed after it: such a client is never closed itself)."""

    def __init__(self, name: str, url: str, secret: str,
                 verify: ssl.SSLContext | bool = True, *, timeout: float | httpx.Timeout = LONG,
                 http: httpx.Client | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        if http is None and transport is None:
            transport = httpx.HTTPTransport(verify=verify, limits=ONE_SHOT)
        super().__init__(url, secret, unreachable=f"host {name}: agent unreachable",
                         timeout=timeout, verify=verify, transport=transport, http=http)
        self.name = name
        self.secret = secret

    def _url(self, path: str) -> str:
        return agent_url(self.name, self.url, path)

    call = HttpClient.request  # the name migrate and live_migrate use

    # --- what a user waits on ------------------------------------------------------------

    def image_exists(self, image: str) -> bool:
        return bool(self.request("GET", "/v1/images/exists", params={"ref": image})["exists"])

    def check_host_path(self, path: str, root: str) -> str:
        """The path resolved on the host; 4xx when it leaves `root` or is never allowed."""
        reply = self.request("GET", "/v1/host-paths/check", params={"path": path, "root": root})
        return str(reply["resolved"])

    def image_tags(self) -> set[str]:
        """Every image tag the host's engine has."""
        return set(self.request("GET", "/v1/images")["tags"])

    async def open_push(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Start a push on the agent; errors before the first byte (no such image) raise
        here, the progress lines then come from the returned iterator."""
        return await self.open_stream("POST", "/v1/images/push", json=body,
                                      interrupted=f"host {self.name}: push interrupted")

    def usage(self, instance_id: str) -> Usage:
        return Usage.model_validate(self.request("GET", f"/v1/instances/{instance_id}/usage"))

    def top(self, instance_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/instances/{instance_id}/top"))

    def doctor(self, bridges: list[str], ovs: bool) -> list[CheckResult]:
        """The host's checks; the server's time goes along for the agent's clock check."""
        params = {"server_time": datetime.now(UTC).isoformat(), "bridges": ",".join(bridges),
                  "ovs": str(ovs).lower()}
        return [CheckResult.model_validate(item)
                for item in self.request("GET", "/v1/doctor", params=params)]

    def exec(self, instance_id: str, req: ExecRequest, timeout: float | None) -> ExecResult:
        reply = self.request("POST", f"/v1/instances/{instance_id}/exec",
                             json=req.model_dump(), timeout=timeout)
        return ExecResult.model_validate(reply)

    async def stream_logs(self, instance_id: str,
                          params: dict[str, str]) -> AsyncGenerator[bytes, None]:
        """The container's log; the agent's refusal raises at the first chunk."""
        body = await self.open_stream("GET", f"/v1/instances/{instance_id}/logs",
                                      params=params)
        try:
            async for chunk in body:
                yield chunk
        finally:
            await body.aclose()

    # --- transfers: images, snapshots, migration --------------------------------------------

    async def load_image(self, name: str, body: AsyncIterator[bytes]) -> str:
        reply = await self.arequest("POST", "/v1/images/load", params={"name": name},
                                    content=body, what=f"host {self.name}: image load")
        return str(reply["ref"])

    def pull_image(self, ref: str) -> None:
        self.request("POST", "/v1/images/pull", params={"ref": ref})

    def commit(self, instance_id: str, target: str, pause: bool) -> str:
        reply = self.request("POST", f"/v1/instances/{instance_id}/commit",
                             json={"target": target, "pause": pause})
        return str(reply["ref"])

    def discard(self, instance_id: str, generation: int, revision: int = 0) -> None:
        """The host's copy removed; with `revision` (of the move away) the agent also refuses
        a desired state of the instance older than that (agent/runtime.py `forget`)."""
        self.request("POST", f"/v1/instances/{instance_id}/discard",
                     params={"generation": generation, "revision": revision})

    def remove_volume(self, docker_name: str) -> None:
        self.request("DELETE", f"/v1/volumes/{docker_name}")

    def archive_to(self, docker_name: str, path: Path) -> int:
        """Download a volume's tar into `path`; returns its size."""
        path.parent.mkdir(parents=True, exist_ok=True)
        chunks = self.chunks("GET", f"/v1/volumes/{docker_name}/archive",
                             what=f"host {self.name}: archive of {docker_name}")
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        return path.stat().st_size

    def restore_from(self, docker_name: str, path: Path) -> None:
        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 16):
                    yield chunk
        self.request("PUT", f"/v1/volumes/{docker_name}/archive", content=chunks())

    def grant(self, volumes: list[str]) -> str:
        """A one-time token for reading `volumes` from this host's agent."""
        token = secrets.token_urlsafe(24)
        self.request("POST", "/v1/transfer/tokens", json={"token": token, "volumes": volumes})
        return token

    def pull_volume(self, docker_name: str, source: AgentClient, newer_than: float | None,
                    prune: bool) -> float:
        """This host fetches a volume from `source` (agent ↔ agent); returns when it began."""
        token = source.grant([docker_name])
        reply = self.request("POST", f"/v1/volumes/{docker_name}/pull",
                             json={"source_url": source.url, "token": token,
                                   "newer_than": newer_than, "prune": prune})
        return float(reply["started"])


class AgentProxy:
    """The server's connection pool to every agent (`ctx.agents`), closed at shutdown."""

    def __init__(self, timeout: float = SHORT, ca: Path | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        """`transport`: httpx's own (TLS checked against `ca`) when None."""
        self.verify: ssl.SSLContext | bool = client_context(ca)
        self.ssl: ssl.SSLContext | None = self.verify if isinstance(self.verify, ssl.SSLContext) \
            else None  # for the console's wss:// connection to an agent
        self._timeout = timeout
        self._transport = transport or httpx.HTTPTransport(verify=self.verify)
        self._http = httpx.Client(timeout=timeout, verify=self.verify, transport=self._transport)

    def close(self) -> None:
        self._http.close()

    def to(self, host: str, url: str, secret: str,
           timeout: float | httpx.Timeout | None = None) -> AgentClient:
        """The agent of `host`, on the pooled transport (`timeout`: SHORT when None)."""
        return AgentClient(host, url, secret, self.verify, timeout=timeout or self._timeout,
                           http=self._http, transport=self._transport)

    # The calls routers make with a host's (name, url, secret).

    def image_exists(self, host: str, url: str, secret: str, image: str) -> bool:
        return self.to(host, url, secret).image_exists(image)

    def check_host_path(self, host: str, url: str, secret: str, path: str, root: str) -> str:
        return self.to(host, url, secret).check_host_path(path, root)

    def image_tags(self, host: str, url: str, secret: str) -> set[str]:
        return self.to(host, url, secret).image_tags()

    async def open_push(self, host: str, url: str, secret: str,
                        body: dict[str, Any]) -> AsyncIterator[bytes]:
        return await self.to(host, url, secret).open_push(body)

    def remove_volume(self, host: str, url: str, secret: str, docker_name: str) -> None:
        self.to(host, url, secret).remove_volume(docker_name)

    def usage(self, host: str, url: str, secret: str, instance_id: str) -> Usage:
        return self.to(host, url, secret).usage(instance_id)

    def top(self, host: str, url: str, secret: str, instance_id: str) -> dict[str, Any]:
        return self.to(host, url, secret).top(instance_id)

    def doctor(self, host: str, url: str, secret: str, bridges: list[str],
               ovs: bool) -> list[CheckResult]:
        return self.to(host, url, secret).doctor(bridges, ovs)

    def exec(self, host: str, url: str, secret: str, instance_id: str,
             req: ExecRequest, timeout: float | None) -> ExecResult:
        return self.to(host, url, secret).exec(instance_id, req, timeout)

    def stream_logs(self, host: str, url: str, secret: str, instance_id: str,
                    params: dict[str, str]) -> AsyncGenerator[bytes, None]:
        return self.to(host, url, secret).stream_logs(instance_id, params)


def host_target(ctx: ServerContext, sess: Session, host_id: str | None,
                what: str) -> AgentClient:
    """The agent of the host `host_id` for a transfer; 409 (naming `what`) when that host is
    not up."""
    host = sess.get(HostRow, host_id) if host_id else None
    if host is None or host.state != "up" or not host.api_url:
        raise Conflict(f"{what}: its host is not up")
    return ctx.agents.to(host.name, host.api_url, host.api_secret, LONG)


__all__ = ["AgentClient", "AgentProxy", "DockyardError", "host_target"]
