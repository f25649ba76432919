"""Agent endpoints of a live migration (CRIU through containerd and `docker start
--checkpoint`), used by the server.

    GET  /v1/live/facts?instance_id=I    HostFacts: criu + `criu check`, experimental dockerd,
                                         kernel, CPU flags, and (source) the instance's
                                         processes' sockets and its mounts
    POST /v1/instances/{id}/checkpoint   source: hold the instance (the reconciler leaves it
                                         alone), unplumb eth0 (the veth is not dumped: only lo
                                         is in the netns), checkpoint with exit:
                                         `ctr task checkpoint --image-path` into
                                         dockerd's directory (containerd_tasks.py),
                                         else `docker checkpoint create`
    GET  /v1/instances/{id}/checkpoints/{name}/archive   the checkpoint as a tar stream
                                         (one-time token); DATA-ROOT/containers/ID/
                                         checkpoints/NAME, dockerd's own place: `docker
                                         start` refuses another --checkpoint-dir
    POST /v1/instances/{id}/restore      target: files, network, image, create (generation
                                         of the request), fetch the checkpoint from the
                                         source agent, `docker start --checkpoint`, plumb eth0
                                         with the same IP and MAC (+ gratuitous ARP)
    POST /v1/instances/{id}/resume       source, after a failure: restore from the checkpoint
                                         here (else a plain start), release the hold
    DELETE /v1/instances/{id}/checkpoints/{name}   drop a checkpoint directory

A restored container is "incoming" until the server's desired state names it, so a resync in
between does not take it for an orphan.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from dockyard.adapters import containerd_tasks, criu, hostinfo, volume_archive
from dockyard.adapters.docker_containers import ContainerInfo
from dockyard.adapters.docker_engine import RESTART_POLICY, DockerEngine
from dockyard.adapters.lxcfs import Lxcfs
from dockyard.agent.reconciler import Reconciler
from dockyard.client import client_context
from dockyard.errors import BackendError, Conflict, DockyardError, InvalidRequest, Unauthorized
from dockyard.model import ids
from dockyard.model.agent import DesiredInstance
from dockyard.model.live import HostFacts, InstanceFacts, MountFact
from dockyard.model.validators import NAME_RE

log = logging.getLogger(__name__)


@dataclass
class LiveHooks:
    """What the live endpoints need from the running agent (agent/runtime.py)."""

    name: str
    home: Path
    reconciler: Callable[[], Reconciler | None]
    hold: Callable[[str], None]  # the reconciler leaves the instance alone
    release: Callable[[str], None]  # ... and syncs it again
    adopt: Callable[[str], None]  # not an orphan until the desired state names it
    own_roots: list[str] = field(default_factory=list)
    lxcfs: Lxcfs | None = None
    # agent-to-agent fetches: one kept client (a new one costs ~30 ms for its SSL context
    # inside the downtime, twice) that trusts the cluster CA in a TLS cluster
    peers: httpx.Client = field(default_factory=lambda: peer_client(None))


class CheckpointRequest(BaseModel):
    checkpoint: str


class RestoreRequest(BaseModel):
    desired: DesiredInstance
    checkpoint: str
    source_url: str = ""
    token: str = ""
    rootfs: str = "image"  # image: desired.image holds it (a commit); delta: fetch the upperdir
    phase: str = "all"  # prepare: only create the container (before the checkpoint);
    # start: fetch and restore into the prepared one; all: both


def _name(checkpoint: str) -> str:
    if not NAME_RE.fullmatch(checkpoint):
        raise InvalidRequest(f"bad checkpoint name {checkpoint!r}")
    return checkpoint


def host_facts(engine: DockerEngine, hooks: LiveHooks, instance_id: str | None) -> HostFacts:
    info = engine.info()
    facts = HostFacts(host=hooks.name, criu=criu.criu_facts(),
                      checkpoint=bool(info.get("ExperimentalBuild")),
                      docker_version=str(info.get("ServerVersion") or ""),
                      storage_driver=str(info.get("Driver") or ""),
                      kernel=hostinfo.kernel_release(), cpu_flags=criu.cpu_flags(),
                      own_roots=hooks.own_roots,
                      lxcfs=hooks.lxcfs is not None and hooks.lxcfs.available())
    if instance_id is not None:
        facts.instance = instance_facts(engine, instance_id)
    return facts


def instance_facts(engine: DockerEngine, instance_id: str) -> InstanceFacts:
    name = ids.container_name(instance_id)
    info = engine.inspect(name)
    if info is None or not info.running:
        return InstanceFacts(running=False)
    pids = criu.instance_pids(info.pid)
    mounts = [MountFact(kind=m["type"], source=m["source"], destination=m["destination"],
                        propagation=m.get("propagation", "")) for m in engine.mounts(name)]
    return InstanceFacts(running=True, pid=info.pid, processes=len(pids),
                         sockets=criu.sockets(pids, info.pid), mounts=mounts,
                         mountinfo=criu.mountinfo(info.pid), devices=criu.open_devices(pids),
                         links=criu.links(info.pid), sandbox=not info.network_disabled)


def install_live(app: FastAPI, engine: DockerEngine, authorized: Callable[..., None],
                 consume: Callable[[str, str], bool], hooks: LiveHooks) -> None:
    @app.get("/v1/live/facts", response_model=HostFacts, dependencies=[Depends(authorized)])
    def facts(instance_id: str | None = None) -> HostFacts:
        return host_facts(engine, hooks, instance_id)

    @app.post("/v1/instances/{instance_id}/checkpoint", dependencies=[Depends(authorized)])
    def checkpoint(instance_id: str, body: CheckpointRequest) -> dict[str, float]:
        started = time.monotonic()
        cp = _name(body.checkpoint)
        name = ids.container_name(instance_id)
        info = engine.inspect(name)
        if info is None or not info.running:
            raise Conflict(f"instance {instance_id} is not running here")
        hooks.hold(instance_id)
        rec = hooks.reconciler()
        if rec is not None:  # the veth goes: only lo stays in the netns CRIU sees
            rec.network.unplumb(instance_id)
        t_unplumbed = time.monotonic()
        path = Path(engine.checkpoint_dir(info.id, cp))
        shutil.rmtree(path, ignore_errors=True)
        work = hooks.home / "criu-work" / instance_id
        shutil.rmtree(work, ignore_errors=True)
        engine.set_restart_policy(name, "no")  # else dockerd restarts it after the dump
        shim = containerd_tasks.shim_of(info.pid, info.id) \
            if containerd_tasks.available() else None
        t_dump = time.monotonic()
        try:
            if shim is not None:  # straight into dockerd's directory (containerd_tasks.py)
                containerd_tasks.checkpoint(shim, path, work / cp)
                shutil.rmtree(work, ignore_errors=True)
            else:
                engine.checkpoint(name, cp)
        except DockyardError as exc:
            engine.set_restart_policy(name, RESTART_POLICY)
            why = criu.log_errors(exc.message)  # runc says "type NOTIFY", the log says why
            if why:
                log.warning("checkpoint of %s failed: %s", instance_id, why)
                raise type(exc)(f"{exc.message} [criu: {why}]") from exc
            raise
        done = time.monotonic()
        return {"seconds": done - started, "unplumb_seconds": t_unplumbed - started,
                "policy_seconds": t_dump - t_unplumbed, "dump_seconds": done - t_dump,
                "through_containerd": float(shim is not None),
                "bytes": float(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))}

    def where(instance_id: str, checkpoint: str) -> Path:
        info = engine.inspect(ids.container_name(instance_id))
        if info is None:
            raise InvalidRequest(f"instance {instance_id} has no container here")
        return Path(engine.checkpoint_dir(info.id, _name(checkpoint)))

    @app.get("/v1/instances/{instance_id}/checkpoints/{checkpoint}/archive")
    def archive(instance_id: str, checkpoint: str, request: Request) -> StreamingResponse:
        token = request.query_params.get("token")
        if token is None:
            authorized(request)
        elif not consume(token, f"checkpoint:{_name(checkpoint)}"):
            raise Unauthorized("transfer token unknown, used or expired")
        path = where(instance_id, checkpoint)
        if not path.is_dir():
            raise InvalidRequest(f"no checkpoint {checkpoint} here")
        return StreamingResponse(volume_archive.tar_stream(str(path)),
                                 media_type="application/x-tar")

    @app.get("/v1/instances/{instance_id}/rootfs-delta")
    def rootfs_delta(instance_id: str, request: Request) -> StreamingResponse:
        """The (stopped) container's writable layer: its root filesystem delta."""
        token = request.query_params.get("token")
        if token is None:
            authorized(request)
        elif not consume(token, f"rootfs:{instance_id}"):
            raise Unauthorized("transfer token unknown, used or expired")
        upper = engine.upper_dir(ids.container_name(instance_id))
        return StreamingResponse(volume_archive.layer_stream(upper),
                                 media_type="application/x-tar")

    @app.delete("/v1/instances/{instance_id}/checkpoints/{checkpoint}", status_code=204,
                dependencies=[Depends(authorized)])
    def drop(instance_id: str, checkpoint: str) -> None:
        info = engine.inspect(ids.container_name(instance_id))
        if info is not None:
            shutil.rmtree(engine.checkpoint_dir(info.id, _name(checkpoint)),
                          ignore_errors=True)

    @app.post("/v1/instances/{instance_id}/restore", dependencies=[Depends(authorized)])
    def restore(instance_id: str, body: RestoreRequest) -> dict[str, Any]:
        if body.desired.id != instance_id:
            raise InvalidRequest("the desired instance is another one")
        rec = hooks.reconciler()
        if rec is None:
            raise BackendError("the agent has not registered yet")
        hooks.adopt(instance_id)
        try:
            return _restore(engine, rec, hooks, body)
        except DockyardError:
            _undo(engine, rec, instance_id)
            raise

    @app.post("/v1/instances/{instance_id}/resume", dependencies=[Depends(authorized)])
    def resume(instance_id: str, body: CheckpointRequest) -> dict[str, str]:
        """Back to running here after a failed move: from the checkpoint when it is still
        here (the same processes), else the reconciler starts the container afresh."""
        name = ids.container_name(instance_id)
        info = _stopped_after_dump(engine, name, _name(body.checkpoint))
        mode = "running"
        if info is not None and not info.running:
            try:
                engine.start_checkpoint(name, _name(body.checkpoint))
                mode = "checkpoint"
            except DockyardError as exc:
                log.warning("resume %s from its checkpoint failed (%s): plain start",
                            instance_id, exc.message)
                mode = "plain"
        if info is not None:
            engine.set_restart_policy(name, RESTART_POLICY)
        hooks.release(instance_id)  # the reconciler plumbs eth0 (or starts it plainly)
        return {"mode": mode}


def _stopped_after_dump(engine: DockerEngine, name: str, checkpoint: str,
                        timeout: float = 5.0) -> ContainerInfo | None:
    """The container as dockerd sees it; after a complete dump (CRIU's inventory written)
    once dockerd has noticed the task's exit: a dump through containerd returns before
    dockerd handles that event."""
    info = engine.inspect(name)
    if info is None or not info.running:
        return info
    if not (Path(engine.checkpoint_dir(info.id, checkpoint)) / "inventory.img").exists():
        return info  # no dump here: it is still running
    deadline = time.monotonic() + timeout
    while info is not None and info.running and time.monotonic() < deadline:
        time.sleep(0.05)
        info = engine.inspect(name)
    return info


def peer_client(ca: Path | None) -> httpx.Client:
    """The client for another agent's API: https ones are checked against the cluster CA."""
    return httpx.Client(timeout=httpx.Timeout(10.0, read=120.0), verify=client_context(ca))


def _fetch(peers: httpx.Client, url: str, token: str, dest: Path, layer: bool = False) -> None:
    def chunks() -> Any:
        with peers.stream("GET", url, params={"token": token}) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise BackendError(f"checkpoint fetch {url}: {resp.status_code} "
                                   f"{resp.text[:200]}")
            yield from resp.iter_bytes()

    if not layer:
        shutil.rmtree(dest, ignore_errors=True)
    try:
        (volume_archive.untar_layer if layer else volume_archive.untar)(str(dest), chunks())
    except httpx.HTTPError as exc:
        raise BackendError(f"checkpoint fetch {url}: {exc}") from exc


def _restore(engine: DockerEngine, rec: Reconciler, hooks: LiveHooks,
             body: RestoreRequest) -> dict[str, Any]:
    d = body.desired
    t0 = time.monotonic()
    name = ids.container_name(d.id)
    if body.phase in ("prepare", "all"):
        container_id = _prepare(engine, rec, d)
        if body.source_url:  # a kept-alive connection to the source before the downtime
            try:
                hooks.peers.get(f"{body.source_url.rstrip('/')}/healthz")
            except httpx.HTTPError as exc:
                log.debug("warm-up of %s: %s", body.source_url, exc)
        if body.phase == "prepare":
            return {"container_id": container_id, "create_seconds": time.monotonic() - t0}
    else:
        info = engine.inspect(name)
        if info is None or int(info.labels.get(ids.LABEL_GENERATION, "0")) != d.generation:
            raise Conflict(f"no prepared copy of {d.name} (generation {d.generation}) here")
        container_id = info.id
    t_created = time.monotonic()
    cp = _name(body.checkpoint)
    base = f"{body.source_url.rstrip('/')}/v1/instances/{d.id}"
    path = Path(engine.checkpoint_dir(container_id, cp))
    with ThreadPoolExecutor(2) as pool:  # the checkpoint and the root filesystem delta
        jobs = [pool.submit(_fetch, hooks.peers, f"{base}/checkpoints/{cp}/archive",
                            body.token, path)]
        if body.rootfs == "delta":
            jobs.append(pool.submit(_fetch, hooks.peers, f"{base}/rootfs-delta", body.token,
                                    Path(engine.upper_dir(container_id)), True))
        for job in jobs:
            job.result()
    t_fetched = time.monotonic()
    info = engine.start_checkpoint(name, cp)
    t_started = time.monotonic()
    rec.network.plumb(info.pid, d)  # same IP and MAC; sends a gratuitous ARP
    rec.network.arrived(d)
    t_plumbed = time.monotonic()
    eth0 = rec.network.eth0(info.pid)
    rec.limits.ensure_io(info.pid, d.limits)
    rec.limits.ensure_rates(info.pid, d.id, d.limits)
    shutil.rmtree(path, ignore_errors=True)
    return {"pid": info.pid, "container_id": info.id,
            "eth0": {"mac": eth0.mac, "addresses": list(eth0.addresses)} if eth0 else None,
            "create_seconds": t_created - t0, "fetch_seconds": t_fetched - t_created,
            "restore_seconds": t_started - t_fetched, "plumb_seconds": t_plumbed - t_started}


def _prepare(engine: DockerEngine, rec: Reconciler, d: DesiredInstance) -> str:
    """Files, network, image and the created (not started) container of generation N."""
    rec.files.write(d)
    rec.files.set_applied_restart(d.id, d.restart_serial)  # no restart after adoption
    rec.network.ensure_network(d.network)
    name = ids.container_name(d.id)
    old = engine.inspect(name)
    if old is not None:  # a copy left by an earlier attempt (never a newer generation)
        if int(old.labels.get(ids.LABEL_GENERATION, "0")) > d.generation:
            raise Conflict(f"a newer copy of {d.name} is here")
        rec.network.unplumb(d.id)
        engine.remove(old.id)
    rec.ensure_image(d)
    return engine.create(rec.spec(d))


def _undo(engine: DockerEngine, rec: Reconciler, instance_id: str) -> None:
    steps: list[Callable[[], None]] = [
        lambda: rec.network.unplumb(instance_id),
        lambda: engine.remove(ids.container_name(instance_id))]
    for step in steps:
        try:
            step()
        except DockyardError as exc:
            log.warning("undo restore of %s: %s", instance_id, exc.message)
