"""Server → agent calls for images, snapshots and migration (agent/transfer.py serves them).

Archives and image uploads are streamed: from a file or a request body into the agent, or
from the agent into a file; never whole in memory. Failures are BackendError with the host.
In a TLS cluster `verify` is the cluster CA's context (AgentProxy.verify): agents' https
certificates are checked against it only.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dockyard.errors import BackendError, from_body

LONG = httpx.Timeout(10.0, read=600.0, write=600.0)


@dataclass(frozen=True)
class HostTarget:
    name: str
    url: str
    secret: str
    verify: ssl.SSLContext | bool = True

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = httpx.request(method, self.url.rstrip("/") + path, headers=self._headers(),
                                 timeout=kwargs.pop("timeout", LONG), verify=self.verify,
                                 **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"host {self.name}: agent unreachable: {exc}") from exc
        _raise(resp)
        return resp.json() if resp.content else None

    async def load_image(self, name: str, body: AsyncIterator[bytes]) -> str:
        async with httpx.AsyncClient(timeout=LONG, verify=self.verify) as client:
            try:
                resp = await client.post(self.url.rstrip("/") + "/v1/images/load",
                                         params={"name": name}, content=body,
                                         headers=self._headers())
            except httpx.HTTPError as exc:
                raise BackendError(f"host {self.name}: image load: {exc}") from exc
        _raise(resp)
        return str(resp.json()["ref"])

    def pull_image(self, ref: str) -> None:
        self.call("POST", "/v1/images/pull", params={"ref": ref})

    def commit(self, instance_id: str, target: str, pause: bool) -> str:
        reply = self.call("POST", f"/v1/instances/{instance_id}/commit",
                          json={"target": target, "pause": pause})
        return str(reply["ref"])

    def discard(self, instance_id: str, generation: int) -> None:
        self.call("POST", f"/v1/instances/{instance_id}/discard",
                  params={"generation": generation})

    def remove_volume(self, docker_name: str) -> None:
        self.call("DELETE", f"/v1/volumes/{docker_name}")

    def archive_to(self, docker_name: str, path: Path) -> int:
        """Download a volume's tar into `path`; returns its size."""
        path.parent.mkdir(parents=True, exist_ok=True)
        url = self.url.rstrip("/") + f"/v1/volumes/{docker_name}/archive"
        try:
            with httpx.stream("GET", url, headers=self._headers(), timeout=LONG,
                              verify=self.verify) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise(resp)
                with path.open("wb") as out:
                    for chunk in resp.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise BackendError(f"host {self.name}: archive of {docker_name}: {exc}") from exc
        return path.stat().st_size

    def restore_from(self, docker_name: str, path: Path) -> None:
        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 16):
                    yield chunk
        self.call("PUT", f"/v1/volumes/{docker_name}/archive", content=chunks())

    def grant(self, volumes: list[str]) -> str:
        """A one-time token for reading `volumes` from this host's agent."""
        token = secrets.token_urlsafe(24)
        self.call("POST", "/v1/transfer/tokens", json={"token": token, "volumes": volumes})
        return token

    def pull_volume(self, docker_name: str, source: HostTarget, newer_than: float | None,
                    prune: bool) -> float:
        """This host fetches a volume from `source` (agent ↔ agent); returns when it began."""
        token = source.grant([docker_name])
        reply = self.call("POST", f"/v1/volumes/{docker_name}/pull",
                          json={"source_url": source.url, "token": token,
                                "newer_than": newer_than, "prune": prune})
        return float(reply["started"])


def _raise(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    raise from_body(resp.status_code, body)
