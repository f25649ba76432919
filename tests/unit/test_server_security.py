"""The server's security paths on its real app (through httpx's ASGI transport, a SQLite store,
no lifespan: no registry child, no recovery): host tokens on user routes, one host reporting for
another host's instance, the registry proxy's cross-repository mount and its answer when the
registry is down, and the store's file modes."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dockyard.config import ServerSettings
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.server.context import ServerContext
from dockyard.store import tokens
from dockyard.store.tables import (
    EventRow,
    HostRow,
    InstanceRow,
    NetworkRow,
    ProjectRow,
    SampleRow,
)
from tests.unit.asgi import AppClient


@dataclass
class Server:
    client: AppClient
    ctx: ServerContext
    admin: str
    member: str
    hosts: dict[str, str]  # host name -> its token
    instance: str  # an instance on host `a`


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = ServerSettings(home=tmp_path / "home", registry_url="http://127.0.0.1:1")
    app = create_app(settings)
    ctx: ServerContext = app.state.ctx
    project = init_store(ctx.db)  # the default project's id (idempotent)
    with ctx.db.session() as sess:
        for name in ("a", "b"):
            sess.add(HostRow(id=name, name=name, inventory={"cores": [0, 1]}))
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                            gateway="10.0.0.1", bridge="dybn1"))
        sess.flush()
        sess.add(InstanceRow(id="i1", name="web", project_id=project, host_id="a",
                             network_id="n1", image="img", hostname="web", ip="10.0.0.2",
                             mac="02:00:00:00:00:02", state="running",
                             desired_state="running", generation=1))
        member = tokens.mint(sess, "member", project_id=project, description="member")
    hosts = {name: mint_host_token(ctx.db, name) for name in ("a", "b")}
    yield Server(AppClient(app), ctx, mint_admin_token(ctx.db, project), member, hosts, "i1")
    ctx.db.close()


# ------------------------------------------------------------------ host tokens, user routes


def _authenticated_routes(client: AppClient) -> list[tuple[str, str]]:
    """(method, path) of every /v1 route of the OpenAPI schema outside the agent feed that
    answers 401 without a token, path parameters filled with a placeholder."""
    out = []
    for path, operations in client.app.openapi()["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/agent/"):
            continue
        filled = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            if client.request(method.upper(), filled).status_code == 401:
                out.append((method.upper(), filled))
    return out


def test_a_host_token_is_refused_on_every_user_route(server: Server) -> None:
    routes = _authenticated_routes(server.client)
    assert len(routes) > 40  # the walk found the API, not an empty list
    for method, path in routes:
        reply = server.client.request(method, path, headers=_bearer(server.hosts["a"]))
        assert reply.status_code == 403, (method, path, reply.text)
        assert reply.json()["error"]["code"], (method, path)
    assert server.client.get("/v1/instances", headers=_bearer(server.admin)).status_code == 200


# ------------------------------------------------------------- one host, another's instance


def _instance(server: Server) -> InstanceRow:
    with server.ctx.db.session() as sess:
        row = sess.get(InstanceRow, server.instance)
        assert row is not None
        sess.expunge(row)
        return row


def test_a_host_cannot_report_the_state_of_another_hosts_instance(server: Server) -> None:
    body = {"state": "stopped", "generation": 1}
    path = f"/v1/agent/instances/{server.instance}/report"
    reply = server.client.post(path, json=body, headers=_bearer(server.hosts["b"]))
    assert reply.status_code == 404
    assert _instance(server).state == "running"
    reply = server.client.post(path, json=body, headers=_bearer(server.hosts["a"]))
    assert reply.status_code == 204
    assert _instance(server).state == "stopped"


def test_a_host_cannot_attach_events_to_another_hosts_instance(server: Server) -> None:
    for host in ("b", "a"):
        reply = server.client.post("/v1/agent/events", headers=_bearer(server.hosts[host]),
                                   json={"kind": "oom_kill", "message": f"from {host}",
                                         "instance_id": server.instance})
        assert reply.status_code == 204
    with server.ctx.db.session() as sess:
        rows = {r.message: (r.instance_id, r.project_id) for r in sess.scalars(
            select(EventRow).where(EventRow.kind == "oom_kill"))}
    assert rows["from b"] == (None, None)  # kept as a host event of b, in no project
    assert rows["from a"][0] == server.instance


def _stats(instance_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"host": {"time": now, "load1": 0.1, "load5": 0.1, "load15": 0.1, "cores": 2,
                     "free_cores": 2, "memory_total_bytes": 1 << 30,
                     "memory_available_bytes": 1 << 29, "instances_running": 1},
            "instances": [{"instance_id": instance_id, "time": now, "cpu_seconds": 1.0}]}


def _samples(server: Server) -> list[str]:
    with server.ctx.db.session() as sess:
        return list(sess.scalars(select(SampleRow.host_id).where(
            SampleRow.instance_id == server.instance)))


def test_a_host_cannot_report_stats_for_another_hosts_instance(server: Server) -> None:
    reply = server.client.post("/v1/agent/stats", json=_stats(server.instance),
                               headers=_bearer(server.hosts["b"]))
    assert reply.status_code == 204
    assert _samples(server) == []
    server.client.post("/v1/agent/stats", json=_stats(server.instance),
                       headers=_bearer(server.hosts["a"]))
    assert _samples(server) == ["a"]


# ------------------------------------------------------------------------- registry proxy


class FakeRegistry:
    """The registry behind the proxy (an httpx transport): records what reaches it."""

    def __init__(self) -> None:
        self.seen: list[httpx.URL] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url)
        return httpx.Response(202, headers={"Location": "/v2/x/blobs/uploads/u1"},
                              stream=httpx.ByteStream(b""))


def _mount(server: Server, source: str) -> httpx.URL:
    registry = FakeRegistry()
    proxy = server.client.app.state.registry_proxy
    proxy.http = httpx.AsyncClient(base_url=proxy.url, transport=httpx.MockTransport(registry))
    reply = server.client.post(f"/v2/default/app/blobs/uploads/?mount=sha256:{'0' * 64}"
                               f"&from={source}", auth=("u", server.member))
    assert reply.status_code == 202, reply.text
    assert len(registry.seen) == 1
    return registry.seen[0]


def test_a_blob_mount_from_an_unreadable_repository_becomes_a_plain_upload(
        server: Server) -> None:
    with server.ctx.db.session() as sess:
        sess.execute(NetworkRow.__table__.insert().values(  # a second project, its images
            id="n2", name="n2", project_id=_project(sess, "other"), subnet="10.0.1.0/24",
            gateway="10.0.1.1", bridge="dybn2", dns=[]))
    url = _mount(server, "other/secret")
    assert "from" not in url.params and "mount" not in url.params
    url = _mount(server, "default/base")  # its own project's: the mount stays
    assert url.params["from"] == "default/base" and url.params["mount"]


def _project(sess: Any, name: str) -> str:
    sess.add(ProjectRow(id=f"p-{name}", name=name))
    sess.flush()
    return f"p-{name}"


def test_the_registry_proxy_answers_503_in_the_registry_error_shape_when_it_is_down(
        server: Server) -> None:
    reply = server.client.get("/v2/default/app/tags/list", auth=("u", server.member))
    assert reply.status_code == 503
    (error,) = reply.json()["errors"]
    assert error["code"] == "UNAVAILABLE" and "does not answer" in error["message"]


# --------------------------------------------------------------------------- store files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_home_and_the_database_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)  # an existing home, made as `dockyard up` did before
    db_file = home / "dockyard.db"
    old = os.umask(0o022)
    try:
        db_file.touch(mode=0o644)
        for suffix in ("-wal", "-shm"):
            (home / f"dockyard.db{suffix}").touch(mode=0o644)
        app = create_app(ServerSettings(home=home))
        ctx: ServerContext = app.state.ctx
        mint_admin_token(ctx.db, init_store(ctx.db))  # a write: the WAL is in use
        files = [db_file, home / "dockyard.db-wal", home / "dockyard.db-shm"]
        modes = {f.name: _mode(f) for f in files if f.exists()}
        ctx.db.close()  # (the last connection's close removes -wal and -shm)
    finally:
        os.umask(old)
    assert _mode(home) == 0o700
    assert modes == {f.name: 0o600 for f in files}


def test_a_new_database_is_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        app = create_app(ServerSettings(home=tmp_path / "fresh"))
        ctx: ServerContext = app.state.ctx
        mint_admin_token(ctx.db, init_store(ctx.db))
        modes = {p.name: _mode(p) for p in (tmp_path / "fresh").glob("dockyard.db*")}
        ctx.db.close()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "fresh") == 0o700
    assert modes == {"dockyard.db": 0o600, "dockyard.db-wal": 0o600, "dockyard.db-shm": 0o600}
