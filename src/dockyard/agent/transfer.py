"""Agent endpoints for images, snapshots and migration (installed on the agent API).

    POST /v1/images/load?name=N:T     body: a `docker save` archive, spooled to the agent's
                                      disk (never memory) ─▶ docker load ─▶ tag ─▶ push
    POST /v1/instances/{id}/commit    docker commit (same PID; `pause` freezes it) ─▶ push
    POST /v1/instances/{id}/discard   remove this host's copy of generation N (never newer)
    GET  /v1/volumes/{v}/archive      tar stream (host secret, or a one-time token)
    GET  /v1/volumes/{v}/paths        every entry (the delta pass prunes what is gone)
    PUT  /v1/volumes/{v}/archive      fill (creating) a volume from a tar stream
    POST /v1/volumes/{v}/pull         fetch a volume from another agent (token from the server)
    POST /v1/transfer/tokens          the server hands a source agent one-time tokens

A one-time token names the volumes it may read; each read consumes that volume's right.
"""

from __future__ import annotations

import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from dockyard.adapters import volume_archive
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.errors import BackendError, InvalidRequest, NotFound, Unauthorized
from dockyard.model import ids
from dockyard.model.volume import DOCKER_PREFIX

TOKEN_TTL = 600.0


class CommitRequest(BaseModel):
    target: str
    pause: bool = False


class TokenGrant(BaseModel):
    token: str
    volumes: list[str]


class PullRequest(BaseModel):
    source_url: str
    token: str
    newer_than: float | None = None
    prune: bool = False


class Tokens:
    """One-time transfer tokens: token -> volumes still readable, with an expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, tuple[set[str], float]] = {}

    def grant(self, token: str, volumes: list[str]) -> None:
        with self._lock:
            self._grants[token] = (set(volumes) | {f"paths:{v}" for v in volumes},
                                   time.monotonic() + TOKEN_TTL)

    def consume(self, token: str, right: str) -> bool:
        with self._lock:
            volumes, expiry = self._grants.get(token, (set(), 0.0))
            if right not in volumes or time.monotonic() > expiry:
                return False
            volumes.discard(right)
            return True


def _is_image_archive(path: Path) -> bool:
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
    except (tarfile.TarError, OSError):
        return False
    return "manifest.json" in names or "./manifest.json" in names


def _volume(name: str) -> str:
    if not name.startswith(DOCKER_PREFIX):
        raise NotFound(f"volume {name} is not a Dockyard volume")
    return name


def _load_and_push(engine: DockerEngine, spool: Path, name: str, registry: str) -> str:
    if not _is_image_archive(spool):
        raise InvalidRequest("not an image archive (a `docker save` tar with manifest.json)")
    with spool.open("rb") as fh:
        loaded = engine.load(fh)
    if not loaded:
        raise InvalidRequest("the archive held no image")
    target = f"{registry}/{name}"
    engine.tag(loaded[0], target)
    try:
        for _ in engine.push(target, target):
            pass
    finally:
        engine.remove_image(target, untag_only=True)
    return target


def install_transfer(app: FastAPI, engine: DockerEngine, authorized: Callable[..., None],
                     registry: str, home: Path, forget: Callable[[str, int], None],
                     peers: httpx.Client) -> Tokens:
    """`peers`: the client for other agents' APIs (it trusts the cluster CA)."""
    tokens = Tokens()
    _install_images(app, engine, authorized, registry, home, forget)

    def reader(request: Request, docker_name: str, right: str) -> None:
        token = request.query_params.get("token")
        if token is not None:
            if not tokens.consume(token, right):
                raise Unauthorized("transfer token unknown, used or expired")
            return
        authorized(request)

    @app.post("/v1/transfer/tokens", status_code=204, dependencies=[Depends(authorized)])
    def grant(body: TokenGrant) -> None:
        tokens.grant(body.token, body.volumes)

    @app.get("/v1/volumes/{docker_name}/archive")
    def archive(docker_name: str, request: Request,
                newer_than: float | None = None) -> StreamingResponse:
        reader(request, docker_name, _volume(docker_name))
        path = engine.volume_path(docker_name)
        return StreamingResponse(volume_archive.tar_stream(path, newer_than),
                                 media_type="application/x-tar")

    @app.get("/v1/volumes/{docker_name}/paths")
    def volume_paths(docker_name: str, request: Request) -> list[str]:
        reader(request, docker_name, f"paths:{_volume(docker_name)}")
        return volume_archive.paths(engine.volume_path(docker_name))

    @app.put("/v1/volumes/{docker_name}/archive", status_code=204,
             dependencies=[Depends(authorized)])
    async def restore(docker_name: str, request: Request) -> None:
        path = await run_in_threadpool(engine.volume_path, _volume(docker_name), True)
        await _spooled(home, request, lambda spool: _untar_file(path, spool))

    @app.post("/v1/volumes/{docker_name}/pull", dependencies=[Depends(authorized)])
    def pull(docker_name: str, body: PullRequest) -> dict[str, float]:
        return _pull(peers, engine, _volume(docker_name), body)

    return tokens


def _install_images(app: FastAPI, engine: DockerEngine, authorized: Callable[..., None],
                    registry: str, home: Path, forget: Callable[[str, int], None]) -> None:
    @app.post("/v1/images/load", dependencies=[Depends(authorized)])
    async def load(name: str, request: Request) -> dict[str, str]:
        if not registry:
            raise InvalidRequest("this cluster has no image registry")
        ref = await _spooled(home, request,
                             lambda spool: _load_and_push(engine, spool, name, registry))
        return {"ref": ref}

    @app.post("/v1/images/pull", status_code=204, dependencies=[Depends(authorized)])
    def pull_image(ref: str) -> None:
        """Fetch an image ahead of need (a migration's target, before the stop)."""
        if not engine.image_exists(ref):
            for _ in engine.pull(ref):
                pass

    @app.post("/v1/instances/{instance_id}/commit", dependencies=[Depends(authorized)])
    def commit(instance_id: str, body: CommitRequest) -> dict[str, str]:
        image_id = engine.commit(ids.container_name(instance_id), body.target, body.pause)
        try:
            for _ in engine.push(body.target, body.target):
                pass
        finally:
            engine.remove_image(body.target, untag_only=True)
        return {"image_id": image_id, "ref": body.target}

    @app.post("/v1/instances/{instance_id}/discard", status_code=204,
              dependencies=[Depends(authorized)])
    def discard(instance_id: str, generation: int, revision: int = 0) -> None:
        """Remove this host's copy (generation `generation` or older) of an instance that
        left; with `revision` (the server's revision of the move away) a desired state of it
        older than that is not taken again here."""
        info = engine.inspect(ids.container_name(instance_id))
        if info is not None and int(info.labels.get(ids.LABEL_GENERATION, "0")) > generation:
            raise InvalidRequest(f"the copy of {instance_id} here is newer than {generation}")
        forget(instance_id, revision)  # also when no copy is here yet: a sync may be making one
        info = engine.inspect(ids.container_name(instance_id))
        if info is None:
            return
        if int(info.labels.get(ids.LABEL_GENERATION, "0")) > generation:
            raise InvalidRequest(f"the copy of {instance_id} here is newer than {generation}")
        engine.remove(info.id)


async def _spooled(home: Path, request: Request, work: Callable[[Path], str | None]) -> str:
    """Write the request body to a file under the agent's home, then run `work` on it."""
    (home / "spool").mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=home / "spool", suffix=".tar") as spool:
        async for chunk in request.stream():
            await run_in_threadpool(spool.write, chunk)
        spool.flush()
        return str(await run_in_threadpool(work, Path(spool.name)) or "")


def _untar_file(path: str, spool: Path) -> None:
    with spool.open("rb") as fh:
        volume_archive.untar(path, iter(lambda: fh.read(volume_archive.CHUNK), b""))


def _fetch(peers: httpx.Client, url: str, params: dict[str, str]) -> Iterator[bytes]:
    with peers.stream("GET", url, params=params) as resp:
        if resp.status_code >= 400:
            resp.read()
            raise BackendError(f"volume fetch {url}: {resp.status_code} {resp.text[:200]}")
        yield from resp.iter_bytes()


def _pull(peers: httpx.Client, engine: DockerEngine, docker_name: str,
          body: PullRequest) -> dict[str, float]:
    """Copy a volume from the source agent into ours (created if missing); with `prune`,
    entries the source no longer has are removed (the delta pass)."""
    started = time.time()
    path = engine.volume_path(docker_name, create=True)
    base = f"{body.source_url.rstrip('/')}/v1/volumes/{docker_name}"
    params = {"token": body.token}
    if body.newer_than is not None:
        params["newer_than"] = f"{body.newer_than:.3f}"
    try:
        volume_archive.untar(path, _fetch(peers, f"{base}/archive", params))
        if body.prune:
            resp = peers.get(f"{base}/paths", params={"token": body.token}, timeout=60.0)
            if resp.status_code >= 400:
                raise BackendError(f"volume paths {base}: {resp.status_code}")
            volume_archive.prune(path, set(resp.json()))
    except httpx.HTTPError as exc:
        raise BackendError(f"volume fetch from {body.source_url}: {exc}") from exc
    return {"started": started, "seconds": time.time() - started}
