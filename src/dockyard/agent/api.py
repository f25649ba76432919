"""The agent's own small HTTP API, used by the server: image checks, listing and pushes to the
registry, exec, logs (of a VM: agent/vm_access.py), volume removal, the host doctor and the
interactive console (a websocket, see `agent/console.py`).

Authenticated with the secret the agent handed the server at registration.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection

from dockyard import api_errors
from dockyard.adapters import cgroup_io
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.adapters.lxcfs import Lxcfs
from dockyard.adapters.machine_image import list_images
from dockyard.agent import doctor
from dockyard.agent.build import install_build
from dockyard.agent.console import install_console
from dockyard.agent.live import LiveHooks, install_live, peer_client
from dockyard.agent.security import resolve_host_path
from dockyard.agent.transfer import install_transfer
from dockyard.agent.vm_access import VmAccess
from dockyard.errors import Conflict, DockyardError, InvalidRequest, NotFound, Unauthorized
from dockyard.model import ids
from dockyard.model.doctor import CheckResult
from dockyard.model.image import ImagePush, PushProgress, split_ref
from dockyard.model.instance import ExecRequest, ExecResult, Usage
from dockyard.model.volume import DOCKER_PREFIX


def push_target(source: str, registry: str) -> str:
    """Where `source` goes in the registry: REGISTRY/NAME:TAG (its own name, tag kept)."""
    if not registry:
        raise InvalidRequest("this cluster has no image registry")
    named, name, tag = split_ref(source)
    if named and named != registry:
        raise InvalidRequest(f"{source} names another registry than {registry}")
    return f"{registry}/{name}:{tag}"


def push_lines(engine: DockerEngine, source: str, target: str) -> Iterator[bytes]:
    """The push's progress as JSON lines; the last one carries `ref` or `error`."""
    try:
        for message in engine.push(source, target):
            detail = message.get("progressDetail") or {}
            line = PushProgress(status=str(message.get("status") or ""), id=message.get("id"),
                                current=detail.get("current"), total=detail.get("total"))
            yield (line.model_dump_json(exclude_none=True) + "\n").encode()
        last = PushProgress(status="pushed", ref=target)
    except DockyardError as exc:
        last = PushProgress(status="failed", error=exc.message)
    yield (last.model_dump_json(exclude_none=True) + "\n").encode()


def create_agent_app(engine: DockerEngine, secret: str, cluster: str,
                     lxcfs: Lxcfs, registry: str = "", home: Path | None = None,
                     forget: Callable[[str, int], None] | None = None,
                     live: LiveHooks | None = None, vms: VmAccess | None = None) -> FastAPI:
    """`vms`: this host's VMs (exec, logs and the console go to them, not to Docker)."""
    app = FastAPI(title="Dockyard agent", version="0.1.0")
    api_errors.install(app)

    def authorized(conn: HTTPConnection) -> None:  # a Request or a WebSocket
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), secret):
            raise Unauthorized("agent API: bad or missing token")

    def owned(instance_id: str) -> str:
        name = ids.container_name(instance_id)
        info = engine.inspect(name)
        if info is None or info.labels.get(ids.LABEL_CLUSTER) != cluster:
            raise NotFound(f"instance {instance_id} has no container on this host")
        return name

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/images/exists", dependencies=[Depends(authorized)])
    def image_exists(ref: str) -> dict[str, bool]:
        return {"exists": engine.image_exists(ref)}

    @app.get("/v1/host-paths/check", dependencies=[Depends(authorized)])
    def check_host_path(path: str, root: str) -> dict[str, str]:
        """The path resolved on this host; 422 when it leaves `root` (see agent/security.py)."""
        return {"resolved": resolve_host_path(path, root)}

    @app.get("/v1/images", dependencies=[Depends(authorized)])
    def images() -> dict[str, list[str]]:
        """Every tag this host's engine has."""
        return {"tags": sorted({t for i in list_images(engine) for t in i.tags})}

    @app.post("/v1/images/push", dependencies=[Depends(authorized)])
    def push(body: ImagePush) -> StreamingResponse:
        """Push a local image into the cluster's registry, streaming progress lines."""
        if not engine.image_exists(body.source):
            raise NotFound(f"image {body.source} is not on this host's engine")
        target = push_target(body.source, registry)
        return StreamingResponse(push_lines(engine, body.source, target),
                                 media_type="application/x-ndjson")

    @app.post("/v1/instances/{instance_id}/exec", response_model=ExecResult,
              dependencies=[Depends(authorized)])
    def exec_(instance_id: str, body: ExecRequest) -> ExecResult:
        if vms is not None and vms.owns(instance_id):
            return vms.exec(instance_id, body)
        return engine.exec(owned(instance_id), body.command, body.env, body.workdir, body.user)

    @app.get("/v1/instances/{instance_id}/usage", response_model=Usage,
             dependencies=[Depends(authorized)])
    def usage(instance_id: str) -> Usage:
        info = engine.inspect(owned(instance_id))
        if info is None or not info.running:
            raise Conflict(f"instance {instance_id} is not running")
        now = cgroup_io.read_usage(info.pid)
        return Usage(memory_rss_bytes=now.memory_rss, memory_cache_bytes=now.memory_cache,
                     memory_usage_bytes=now.memory_usage, memory_limit_bytes=now.memory_limit,
                     memory_failcnt=now.memory_failcnt, oom_kills=now.oom_kills,
                     pids_current=now.pids_current, pids_limit=now.pids_max)

    @app.get("/v1/instances/{instance_id}/top", dependencies=[Depends(authorized)])
    def top(instance_id: str) -> dict[str, Any]:
        """The instance's processes, as `docker top` lists them."""
        return engine.top(owned(instance_id))

    @app.get("/v1/instances/{instance_id}/logs", dependencies=[Depends(authorized)])
    def logs(instance_id: str, follow: bool = False,
             tail: str = Query("all")) -> StreamingResponse:
        count: int | str = int(tail) if tail.isdigit() else "all"
        if vms is not None and vms.owns(instance_id):  # the serial log
            lines = vms.logs(instance_id, follow, count if isinstance(count, int) else None)
            return StreamingResponse(lines, media_type="text/plain")
        name = owned(instance_id)
        stream: Iterator[bytes] = engine.logs(name, follow, count)
        return StreamingResponse(stream, media_type="text/plain")

    @app.delete("/v1/volumes/{docker_name}", status_code=204,
                dependencies=[Depends(authorized)])
    def remove_volume(docker_name: str) -> None:
        if not docker_name.startswith(DOCKER_PREFIX):  # only volumes Dockyard named
            raise NotFound(f"volume {docker_name} is not a Dockyard volume")
        engine.remove_volume(docker_name)

    @app.get("/v1/doctor", response_model=list[CheckResult],
             dependencies=[Depends(authorized)])
    def doctor_(server_time: datetime | None = None, bridges: str = "",
                ovs: bool = False) -> list[CheckResult]:
        """Host checks; `server_time` (ISO) measures clock skew, `bridges` (comma-separated)
        are the cluster's bridges whose forwarding rule is checked, `ovs`: OVS networks exist."""
        received_at = datetime.now(UTC)
        if server_time is not None and server_time.tzinfo is None:
            server_time = server_time.replace(tzinfo=UTC)
        wanted = [b for b in bridges.split(",") if b]
        return doctor.examine(engine, lxcfs, cluster, wanted, ovs, server_time, received_at)

    install_console(app, engine, authorized, owned, vms)
    install_build(app, engine, authorized, registry, home)  # builds (agent/build.py)
    if home is not None:  # images, snapshots, migration (agent/transfer.py)
        tokens = install_transfer(app, engine, authorized, registry, home,
                                  forget or (lambda _, __: None),
                                  live.peers if live is not None else peer_client(None))
        if live is not None:  # live migration (agent/live.py)
            install_live(app, engine, authorized, tokens.consume, live)
    return app
