"""The server's one agent client (server/agent_proxy.py: AgentProxy → AgentClient, and
`host_target` for transfers) against a fake agent at its seam, the httpx transport that
AgentProxy pools: what each call sends (path, secret, body), what it returns, and how the
agent's refusals and transport failures come back (the error tree, the host named).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.config import ServerSettings
from dockyard.errors import BackendError, Conflict, NotFound
from dockyard.model.instance import ExecRequest
from dockyard.server.agent_proxy import LONG, SHORT, AgentClient, AgentProxy, host_target
from dockyard.server.bootstrap import init_store
from dockyard.server.context import ServerContext
from dockyard.server.notifier import Notifier
from dockyard.server.registry import client as registry_client
from dockyard.store.db import Database
from dockyard.store.tables import HostRow

H1 = ("h1", "http://h1.test:7443", "secret-1")
Handler = Callable[[httpx.Request], httpx.Response]
USAGE = {"memory_rss_bytes": 1, "memory_cache_bytes": 2, "memory_usage_bytes": 3,
         "memory_limit_bytes": 4, "memory_failcnt": 0, "oom_kills": 0, "pids_current": 5,
         "pids_limit": 6}


class FakeAgent:
    """Answers `routes[(method, path)]` (a reply or a function of the request); 404 with the
    agent's error body for any other route. Records every request with its body."""

    def __init__(self, routes: dict[tuple[str, str], httpx.Response | Handler]) -> None:
        self.routes = routes
        self.seen: list[tuple[httpx.Request, bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request, request.content))
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message":
                                                       f"no route {request.url.path}"}})
        return route(request) if callable(route) else route

    def json_of(self, index: int) -> Any:
        return json.loads(self.seen[index][1])


def proxy(agent: FakeAgent) -> AgentProxy:
    return AgentProxy(transport=httpx.MockTransport(agent))


def test_each_call_reaches_the_agent_with_its_secret_and_returns_its_type() -> None:
    agent = FakeAgent({
        ("GET", "/v1/instances/i1/usage"): httpx.Response(200, json=USAGE),
        ("GET", "/v1/instances/i1/top"): httpx.Response(200, json={"titles": ["PID"],
                                                                   "processes": [["1"]]}),
        ("GET", "/v1/images/exists"): httpx.Response(200, json={"exists": True}),
        ("GET", "/v1/images"): httpx.Response(200, json={"tags": ["a:1", "b:2"]}),
        ("GET", "/v1/host-paths/check"): httpx.Response(200, json={"resolved": "/srv/x"}),
        ("GET", "/v1/doctor"): httpx.Response(200, json=[
            {"name": "dockerd", "status": "ok", "message": "27.0"}]),
        ("POST", "/v1/instances/i1/exec"): httpx.Response(200, json={
            "exit_code": 3, "stdout": "out", "stderr": "err"}),
        ("DELETE", "/v1/volumes/dyv-1"): httpx.Response(204)})
    agents = proxy(agent)
    try:
        assert agents.usage(*H1, "i1").pids_current == 5
        assert agents.top(*H1, "i1") == {"titles": ["PID"], "processes": [["1"]]}
        assert agents.image_exists(*H1, "img:1") is True
        assert agents.image_tags(*H1) == {"a:1", "b:2"}
        assert agents.check_host_path(*H1, "/srv/x/../x", "/srv") == "/srv/x"
        assert [c.name for c in agents.doctor(*H1, ["dybr0"], ovs=False)] == ["dockerd"]
        result = agents.exec(*H1, "i1", ExecRequest(command=["false"]), timeout=5.0)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out", "err")
        agents.remove_volume(*H1, "dyv-1")
    finally:
        agents.close()
    assert all(r.url.host == "h1.test" and r.url.port == 7443 for r, _ in agent.seen)
    assert {r.headers["Authorization"] for r, _ in agent.seen} == {"Bearer secret-1"}
    params = {r.url.path: dict(r.url.params) for r, _ in agent.seen}
    assert params["/v1/images/exists"] == {"ref": "img:1"}
    assert params["/v1/host-paths/check"] == {"path": "/srv/x/../x", "root": "/srv"}
    assert params["/v1/doctor"]["bridges"] == "dybr0"
    assert params["/v1/doctor"]["ovs"] == "false"
    assert agent.json_of(6) == {"command": ["false"], "env": {}, "workdir": None, "user": None}
    assert agent.seen[6][0].extensions["timeout"]["read"] == 5.0
    assert agent.seen[0][0].extensions["timeout"]["read"] == SHORT


def test_the_agents_refusals_come_back_as_its_errors() -> None:
    agent = FakeAgent({
        ("GET", "/v1/instances/i1/usage"): httpx.Response(409, json={
            "error": {"code": "conflict", "message": "instance i1 is not running"}}),
        ("GET", "/v1/instances/i1/top"): httpx.Response(502, text="bad gateway")})
    agents = proxy(agent)
    try:
        with pytest.raises(Conflict, match="^instance i1 is not running$") as conflict:
            agents.usage(*H1, "i1")
        assert conflict.value.status == 409
        with pytest.raises(NotFound, match="no route /v1/images"):
            agents.image_tags(*H1)
        with pytest.raises(BackendError, match="^HTTP 502: bad gateway$"):
            agents.top(*H1, "i1")
    finally:
        agents.close()


def test_a_host_without_an_agent_is_a_conflict_and_nothing_is_sent() -> None:
    agent = FakeAgent({})
    agents = proxy(agent)
    try:
        with pytest.raises(Conflict, match="host h2 has no agent yet"):
            agents.usage("h2", "", "s", "i1")
    finally:
        agents.close()
    assert agent.seen == []


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_a_transport_failure_names_the_host() -> None:
    agents = AgentProxy(transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(BackendError) as caught:
            agents.image_tags(*H1)
    finally:
        agents.close()
    assert caught.value.message == "host h1: agent unreachable: connection refused"


# --- streams the server relays (async) ---------------------------------------------------------

class Interrupted(httpx.AsyncByteStream):
    """A body that breaks after its first chunk (the agent died mid-push)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"line 1\n"
        raise httpx.ReadError("connection reset")


def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        return [chunk async for chunk in stream]
    return asyncio.run(run())


def test_push_opens_then_streams_and_refuses_before_the_first_byte() -> None:
    agent = FakeAgent({("POST", "/v1/images/push"): httpx.Response(
        200, content=b"pushing\ndone\n")})
    agents = proxy(agent)
    try:
        async def pushed(body: dict[str, Any]) -> list[bytes]:
            return [chunk async for chunk in await agents.open_push(*H1, body)]
        assert b"".join(asyncio.run(pushed({"image": "img:1"}))) == b"pushing\ndone\n"
        assert agent.json_of(0) == {"image": "img:1"}

        agent.routes[("POST", "/v1/images/push")] = httpx.Response(404, json={
            "error": {"code": "not_found", "message": "image img:2 not found"}})
        with pytest.raises(NotFound, match="image img:2 not found"):
            asyncio.run(agents.open_push(*H1, {"image": "img:2"}))

        agent.routes[("POST", "/v1/images/push")] = httpx.Response(200, stream=Interrupted())
        got: list[bytes] = []

        async def broken() -> None:
            async for chunk in await agents.open_push(*H1, {"image": "img:3"}):
                got.append(chunk)
        with pytest.raises(BackendError, match="^host h1: push interrupted: connection reset"):
            asyncio.run(broken())
        assert got == [b"line 1\n"]
    finally:
        agents.close()


def test_logs_stream_and_a_refusal_raises_at_the_first_chunk() -> None:
    agent = FakeAgent({("GET", "/v1/instances/i1/logs"): httpx.Response(200, content=b"a\nb\n")})
    agents = proxy(agent)
    try:
        assert b"".join(collect(agents.stream_logs(*H1, "i1", {"tail": "all"}))) == b"a\nb\n"
        assert dict(agent.seen[0][0].url.params) == {"tail": "all"}
        with pytest.raises(NotFound, match="no route /v1/instances/i2/logs"):
            collect(agents.stream_logs(*H1, "i2", {}))
    finally:
        agents.close()


def test_an_image_load_streams_the_request_body() -> None:
    agent = FakeAgent({("POST", "/v1/images/load"): lambda r: httpx.Response(
        200, json={"ref": f"reg/{r.url.params['name']}"})})
    agents = proxy(agent)

    async def body() -> AsyncIterator[bytes]:
        for part in (b"tar", b"-", b"ball"):
            yield part
    try:
        assert asyncio.run(agents.to(*H1).load_image("img:1", body())) == "reg/img:1"
    finally:
        agents.close()
    assert agent.seen[0][1] == b"tar-ball"

    failing = AgentProxy(transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(BackendError, match="^host h1: image load: connection refused$"):
            asyncio.run(failing.to(*H1).load_image("img:1", body()))
    finally:
        failing.close()


# --- transfers: archives, volumes between agents --------------------------------------------

def test_an_archive_goes_to_a_file_and_comes_back_from_it(tmp_path: Path) -> None:
    agent = FakeAgent({
        ("GET", "/v1/volumes/dyv-1/archive"): httpx.Response(200, content=b"T" * 100_000),
        ("PUT", "/v1/volumes/dyv-2/archive"): httpx.Response(204)})
    agents = proxy(agent)
    try:
        target = agents.to(*H1, LONG)
        path = tmp_path / "snap" / "volumes" / "data.tar"
        assert target.archive_to("dyv-1", path) == 100_000
        target.restore_from("dyv-2", path)
        with pytest.raises(NotFound):
            target.archive_to("dyv-3", tmp_path / "other.tar")
    finally:
        agents.close()
    assert agent.seen[1][1] == b"T" * 100_000
    assert agent.seen[0][0].extensions["timeout"]["read"] == 600.0


def test_pull_volume_grants_a_token_on_the_source_for_the_target() -> None:
    agent = FakeAgent({
        ("POST", "/v1/transfer/tokens"): httpx.Response(204),
        ("POST", "/v1/volumes/dyv-1/pull"): httpx.Response(200, json={"started": 12.5})})
    agents = proxy(agent)
    try:
        source = agents.to("src", "http://src.test:7443/", "s-src", LONG)
        target = agents.to("dst", "http://dst.test:7443", "s-dst", LONG)
        assert target.pull_volume("dyv-1", source, 10.0, prune=True) == 12.5
    finally:
        agents.close()
    (grant, granted), (pull, pulled) = agent.seen
    assert (grant.url.host, grant.headers["Authorization"]) == ("src.test", "Bearer s-src")
    assert (pull.url.host, pull.headers["Authorization"]) == ("dst.test", "Bearer s-dst")
    token = json.loads(granted)["token"]
    assert json.loads(granted)["volumes"] == ["dyv-1"]
    assert json.loads(pulled) == {"source_url": "http://src.test:7443", "token": token,
                                  "newer_than": 10.0, "prune": True}


def test_a_client_of_its_own_closes_its_connection_after_each_call() -> None:
    """What migrate and evacuate build with AgentClient(name, url, secret, verify)."""
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"ref": "reg/x:1"})
    client = AgentClient(*H1, True, transport=httpx.MockTransport(answer))
    assert client.commit("i1", "reg/x:1", pause=False) == "reg/x:1"
    assert client.call("POST", "/v1/instances/i1/commit", json={}) == {"ref": "reg/x:1"}
    assert calls == ["/v1/instances/i1/commit"] * 2


# --- host_target: the agent of an instance's host ---------------------------------------------

@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[tuple[ServerContext, FakeAgent]]:
    settings = ServerSettings(home=tmp_path)
    db = Database(settings.db_url())
    init_store(db)
    with db.session() as sess:
        sess.add(HostRow(id="up", name="up1", state="up", api_url=H1[1], api_secret="s-up"))
        sess.add(HostRow(id="down", name="down1", state="down", api_url=H1[1],
                         api_secret="s-down"))
        sess.add(HostRow(id="new", name="new1", state="up", api_url="", api_secret=""))
    agent = FakeAgent({("POST", "/v1/images/pull"): httpx.Response(204)})
    agents = proxy(agent)
    yield (ServerContext(settings=settings, db=db, notifier=Notifier(None), agents=agents,
                         registry=registry_client(settings)), agent)
    agents.close()
    db.close()


def test_host_target_is_the_up_hosts_agent_on_the_pooled_transport(
        ctx: tuple[ServerContext, FakeAgent]) -> None:
    server, agent = ctx
    with server.db.session() as sess:
        target = host_target(server, sess, "up", "instance web")
    assert target.name == "up1"
    target.pull_image("reg/web:1")
    (request, _), = agent.seen
    assert request.headers["Authorization"] == "Bearer s-up"
    assert dict(request.url.params) == {"ref": "reg/web:1"}
    assert request.extensions["timeout"]["read"] == 600.0  # a transfer's, not SHORT


@pytest.mark.parametrize("host_id", ["down", "new", "gone", None])
def test_host_target_refuses_a_host_that_is_not_up(
        ctx: tuple[ServerContext, FakeAgent], host_id: str | None) -> None:
    server, agent = ctx
    with server.db.session() as sess, \
            pytest.raises(Conflict, match="^instance web: its host is not up$"):
        host_target(server, sess, host_id, "instance web")
    assert agent.seen == []
