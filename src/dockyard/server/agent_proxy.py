"""Calls from the server to an agent's own API (exec, logs, image checks, volume removal,
the host doctor).

The agent's API URL and secret come from its registration; the server presents the secret as
a bearer token. Transport failures become BackendError (502) with the host's name. In a TLS
cluster agents serve https with a certificate the cluster CA signed at registration, and every
call here (and the console relay) verifies it against that CA only.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from dockyard.client import client_context
from dockyard.errors import BackendError, Conflict, DockyardError, from_body
from dockyard.model.doctor import CheckResult
from dockyard.model.instance import ExecRequest, ExecResult, Usage


def agent_url(host: str, url: str, path: str) -> str:
    """The agent's URL for `path`; 409 while the host's agent has never registered (a host
    that was only added has no API address yet)."""
    if not url:
        raise Conflict(f"host {host} has no agent yet: start `dockyard agent` there with the "
                       "token `dockyard host add` printed")
    return url.rstrip("/") + path


class AgentProxy:
    def __init__(self, timeout: float = 30.0, ca: Path | None = None) -> None:
        self.verify: ssl.SSLContext | bool = client_context(ca)
        self.ssl: ssl.SSLContext | None = self.verify if isinstance(self.verify, ssl.SSLContext) \
            else None  # for the console's wss:// connection to an agent
        self._client = httpx.Client(timeout=timeout, verify=self.verify)

    def close(self) -> None:
        self._client.close()

    def _call(self, host: str, url: str, secret: str, method: str, path: str,
              **kwargs: Any) -> Any:
        try:
            resp = self._client.request(method, agent_url(host, url, path),
                                        headers={"Authorization": f"Bearer {secret}"}, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"host {host}: agent unreachable: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            raise from_body(resp.status_code, body)
        return resp.json() if resp.content else None

    def image_exists(self, host: str, url: str, secret: str, image: str) -> bool:
        reply = self._call(host, url, secret, "GET", "/v1/images/exists", params={"ref": image})
        return bool(reply["exists"])

    def check_host_path(self, host: str, url: str, secret: str, path: str, root: str) -> str:
        """The path resolved on the host; 4xx when it leaves `root` or is never allowed."""
        reply = self._call(host, url, secret, "GET", "/v1/host-paths/check",
                           params={"path": path, "root": root})
        return str(reply["resolved"])

    def image_tags(self, host: str, url: str, secret: str) -> set[str]:
        """Every image tag the host's engine has."""
        return set(self._call(host, url, secret, "GET", "/v1/images")["tags"])

    async def open_push(self, host: str, url: str, secret: str,
                        body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Start a push on the agent; errors before the first byte (no such image) raise
        here, the progress lines then come from the returned iterator."""
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), verify=self.verify)
        request = client.build_request("POST", agent_url(host, url, "/v1/images/push"), json=body,
                                       headers={"Authorization": f"Bearer {secret}"})
        try:
            resp = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            raise BackendError(f"host {host}: agent unreachable: {exc}") from exc
        if resp.status_code >= 400:
            await resp.aread()
            await client.aclose()
            raise from_body(resp.status_code, resp.json())

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_bytes():
                    yield chunk
            except httpx.HTTPError as exc:
                raise BackendError(f"host {host}: push interrupted: {exc}") from exc
            finally:
                await resp.aclose()
                await client.aclose()

        return lines()

    def remove_volume(self, host: str, url: str, secret: str, docker_name: str) -> None:
        self._call(host, url, secret, "DELETE", f"/v1/volumes/{docker_name}")

    def usage(self, host: str, url: str, secret: str, instance_id: str) -> Usage:
        reply = self._call(host, url, secret, "GET", f"/v1/instances/{instance_id}/usage")
        return Usage.model_validate(reply)

    def top(self, host: str, url: str, secret: str, instance_id: str) -> dict[str, Any]:
        return dict(self._call(host, url, secret, "GET", f"/v1/instances/{instance_id}/top"))

    def doctor(self, host: str, url: str, secret: str, bridges: list[str],
               ovs: bool) -> list[CheckResult]:
        """The host's checks; the server's time goes along for the agent's clock check."""
        params = {"server_time": datetime.now(UTC).isoformat(), "bridges": ",".join(bridges),
                  "ovs": str(ovs).lower()}
        reply = self._call(host, url, secret, "GET", "/v1/doctor", params=params)
        return [CheckResult.model_validate(item) for item in reply]

    def exec(self, host: str, url: str, secret: str, instance_id: str,
             req: ExecRequest, timeout: float | None) -> ExecResult:
        reply = self._call(host, url, secret, "POST", f"/v1/instances/{instance_id}/exec",
                           json=req.model_dump(), timeout=timeout)
        return ExecResult.model_validate(reply)

    async def stream_logs(self, host: str, url: str, secret: str, instance_id: str,
                          params: dict[str, str]) -> AsyncIterator[bytes]:
        target = agent_url(host, url, f"/v1/instances/{instance_id}/logs")
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None),
                                     verify=self.verify) as client:
            try:
                async with client.stream("GET", target, params=params,
                                         headers={"Authorization": f"Bearer {secret}"}) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        raise from_body(resp.status_code, resp.json())
                    async for chunk in resp.aiter_bytes():
                        yield chunk
            except httpx.HTTPError as exc:
                raise BackendError(f"host {host}: agent unreachable: {exc}") from exc


__all__ = ["AgentProxy", "DockyardError"]
