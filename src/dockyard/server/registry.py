"""The cluster's image registry: the server's own `docker-registry`, and a client for it.

    dockyard server (registry_managed) ─▶ /v2/ answers on HOME/registry/registry.sock?
          │                                 ── yes ─▶ use it
          └─ no ─▶ HOME/registry/config.yml (storage HOME/registry/data, a unix socket only)
                 ─▶ `docker-registry serve CONFIG` as a child ─▶ wait for /v2/ ─▶ serve
                 ... server shutdown (lifespan) ─▶ terminate it
    docker / agents ─▶ SERVER:PORT/v2/… (registry_proxy.py: tokens, per-project names) ─▶ socket
    --registry URL ─▶ an outside registry, used directly by the server and the engines

The managed registry listens on nothing but a unix socket in a root-only directory, so every
pull and push goes through the server's authenticated proxy; image references name the proxy's
address (`ServerSettings.public_registry`). The child dies with the server even when the server
is killed (PR_SET_PDEATHSIG). The server talks to the registry over its HTTP API only (catalog,
tags, manifests); it never touches a host's engine: pushes and pulls are the agents' work.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from dockyard.config import ServerSettings
from dockyard.errors import BackendError, InvalidRequest
from dockyard.model.image import RegistryImage, split_ref

log = logging.getLogger(__name__)

MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
))
PR_SET_PDEATHSIG = 1
CATALOG_PAGE = 1000
CONFIG = """\
version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  net: unix
  addr: {socket}
  relativeurls: true
"""
MAX_SOCKET_PATH = 107  # sun_path


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not dlopen


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RegistryProcess:
    """A `docker-registry` the server started (or found already answering) on
    HOME/registry/registry.sock."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "registry"
        self.socket = socket_path(home)
        self.proc: subprocess.Popen[bytes] | None = None

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket))) as http:
                return http.get(f"{SOCKET_URL}/v2/", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        """Start a registry unless one answers; call from the main thread (the death signal
        follows the thread that forked)."""
        if self.answers():
            log.info("using the registry already answering on %s", self.socket)
            return
        binary = shutil.which("docker-registry")
        if binary is None:
            log.warning("docker-registry is not installed: no image registry "
                        "(scripts/setup.sh installs it)")
            return
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise InvalidRequest(f"{self.socket}: too long for a unix socket; use a shorter "
                                 "--home")
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)  # the socket is the registry without credentials: root only
        self.socket.unlink(missing_ok=True)  # left by a killed registry
        config = self.dir / "config.yml"
        config.write_text(CONFIG.format(data=self.dir / "data", socket=self.socket))
        with open(self.dir / "registry.log", "ab") as out:
            self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent)
        log.info("started docker-registry (pid %d) on %s, data in %s", self.proc.pid,
                 self.socket, self.dir / "data")

    def wait_ready(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendError(f"docker-registry exited with {self.proc.returncode}; "
                                   f"see {self.dir / 'registry.log'}")
            if self.answers():
                return
            time.sleep(0.1)
        raise BackendError(f"docker-registry did not answer on {self.socket} in "
                           f"{timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


SOCKET_URL = "http://registry"  # the host part is unused on a unix socket


def socket_path(home: Path) -> Path:
    return home / "registry" / "registry.sock"


def backend(settings: ServerSettings) -> tuple[str, str | None]:
    """(URL, unix socket or None) where the server itself reaches the registry's API."""
    if settings.registry_managed:
        return SOCKET_URL, str(socket_path(settings.home))
    return settings.registry_url.rstrip("/"), None


def client(settings: ServerSettings) -> RegistryClient:
    url, uds = backend(settings)
    return RegistryClient(url, address=settings.public_registry(),
                          transport=httpx.HTTPTransport(uds=uds) if uds else None)


class RegistryClient:
    """The registry's HTTP API (v2): what it holds, and how big it is. `address` is HOST:PORT
    as image references name the registry (the server's proxy for a managed registry)."""

    def __init__(self, url: str, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None, address: str = "") -> None:
        self.url = url.rstrip("/")
        self.address = address or self.url.split("://", 1)[-1]
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.get(path, **kwargs)
        except httpx.InvalidURL as exc:  # control characters and the like in a name or tag
            raise InvalidRequest(f"not a valid image reference: {exc}") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"registry {self.address} unreachable: {exc}") from exc

    def _json(self, path: str, **kwargs: Any) -> Any:
        resp = self._get(path, **kwargs)
        if resp.status_code == 404:
            return None
        if resp.status_code == 400:  # NAME_INVALID, TAG_INVALID: the caller's reference
            raise InvalidRequest(f"the registry refused the reference: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise BackendError(f"registry {self.address}: GET {path}: {resp.status_code} "
                               f"{resp.text[:200]}")
        return resp.json()

    def repositories(self) -> list[str]:
        """The catalog, page by page (the registry serves at most 1000 names a page)."""
        names: list[str] = []
        while True:
            params: dict[str, str | int] = {"n": CATALOG_PAGE}
            if names:
                params["last"] = names[-1]
            page = (self._json("/v2/_catalog", params=params) or {}).get("repositories") or []
            names += page
            if len(page) < CATALOG_PAGE:
                return sorted(names)

    def tags(self, name: str) -> list[str]:
        body = self._json(f"/v2/{name}/tags/list") or {}
        return sorted(body.get("tags") or [])

    def size(self, name: str, tag: str) -> int | None:
        """Config plus compressed layers, from the manifest; None when the tag is unknown."""
        manifest = self._json(f"/v2/{name}/manifests/{tag}",
                              headers={"Accept": MANIFEST_TYPES})
        if manifest is None:
            return None
        parts = [manifest.get("config") or {}, *(manifest.get("layers") or []),
                 *(manifest.get("manifests") or [])]  # an index: its manifests' own sizes
        return sum(int(p.get("size") or 0) for p in parts)

    def delete(self, name: str, tag: str) -> bool:
        """Delete NAME:TAG's manifest (every tag of that manifest goes with it; blobs stay
        until the registry's garbage collection). False when the tag was unknown."""
        resp = self._get(f"/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        digest = resp.headers.get("Docker-Content-Digest")
        if resp.status_code == 404 or not digest:
            return False
        try:
            gone = self._http.delete(f"/v2/{name}/manifests/{digest}")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise BackendError(f"registry {self.address} unreachable: {exc}") from exc
        if gone.status_code >= 400 and gone.status_code != 404:
            raise BackendError(f"registry {self.address}: DELETE {name}:{tag}: "
                               f"{gone.status_code} {gone.text[:200]}")
        return True

    def image(self, name: str, tag: str) -> RegistryImage | None:
        size = self.size(name, tag)
        if size is None:
            return None
        return RegistryImage(name=name, tag=tag, ref=f"{self.address}/{name}:{tag}", size=size)

    def images(self) -> list[RegistryImage]:
        found = []
        for name in self.repositories():
            for tag in self.tags(name):
                image = self.image(name, tag)
                if image is not None:
                    found.append(image)
        return found

    def resolve(self, ref: str) -> str | None:
        """The registry reference of `ref` when the registry holds it (named with or without
        the registry), else None. An unreachable registry holds nothing (logged)."""
        registry, name, tag = split_ref(ref)
        if "@" in ref or registry not in ("", self.address):
            return None
        try:
            size = self.size(name, tag)
        except BackendError as exc:
            log.warning("image %s: %s", ref, exc.message)
            return None
        return f"{self.address}/{name}:{tag}" if size is not None else None
