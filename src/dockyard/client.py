"""The HTTP client of the Dockyard API, used by the CLI and by agents.

Errors come back as the same `dockyard.errors` classes the server raised (rebuilt from the
`{"error": {...}}` body), so callers handle one error tree whether local or remote.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from dockyard.errors import BackendError, from_body


def client_context(ca: Path | str | None) -> ssl.SSLContext | bool:
    """What httpx's `verify=` and websockets' `ssl=` take: the cluster CA when given, else
    the system's trust store. (Here, not in `dockyard.tls`, so that a CLI command does not
    load `cryptography`.)"""
    if not ca:
        return True
    return ssl.create_default_context(cafile=str(ca))


class ApiClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0,
                 ca: Path | str | None = None) -> None:
        """`ca`: the cluster CA that signed an https server's certificate (None: the
        system's trust store)."""
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=client_context(ca),
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        kwargs: dict[str, Any] = {"json": json, "params": params}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach Dockyard at {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text
            raise from_body(resp.status_code, body)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, timeout: float | None = None,
             **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params or None, timeout=timeout)

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("PUT", path, json=body, params=params or None)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params or None)

    def list_all(self, path: str, **params: Any) -> list[Any]:
        """Follow `next` cursors until the list is complete."""
        items: list[Any] = []
        after: str | None = None
        while True:
            query = dict(params)
            if after:
                query["after"] = after
            page = self.get(path, **query)
            items.extend(page["items"])
            after = page.get("next")
            if not after:
                return items

    def upload(self, path: str, data: BinaryIO, timeout: float = 3600.0, **params: Any) -> Any:
        """POST a file as the raw request body, streamed from disk (never read whole)."""
        try:
            resp = self._http.post(path, content=iter(lambda: data.read(1 << 16), b""),
                                   params=params, timeout=httpx.Timeout(10.0, read=timeout))
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach Dockyard at {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text
            raise from_body(resp.status_code, body)
        return resp.json() if resp.content else None

    def stream(self, path: str, *, method: str = "GET", body: Any = None,
               **params: Any) -> Iterator[bytes]:
        try:
            with self._http.stream(method, path, params=params, json=body,
                                   timeout=httpx.Timeout(10.0, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise from_body(resp.status_code, resp.json())
                yield from resp.iter_bytes()
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach Dockyard at {self.url}: {exc}") from exc


def trusted_by_system(url: str) -> bool:
    """Whether an https server's certificate passes the system's trust store (a public CA, or
    a TLS proxy in front of Dockyard)."""
    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=10)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return False
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    return True


def fetch_cluster_ca(url: str) -> str:
    """The cluster CA a server offers, fetched WITHOUT checking its certificate: trust it only
    after its fingerprint was checked (`dockyard login` shows it, as `lxc remote add` does)."""
    try:
        resp = httpx.get(f"{url.rstrip('/')}/v1/cluster/ca", timeout=10, verify=False)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach Dockyard at {url}: {exc}") from exc
    if resp.status_code >= 400:
        raise from_body(resp.status_code, resp.json() if resp.content else resp.text)
    return str(resp.json()["pem"])
