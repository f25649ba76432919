"""A DELETE's answer when the agent finishes the delete first (the cause of test_hollow's 404),
and a create's when the agent fails it first. On the real app (ASGI transport, a SQLite store,
no lifespan) the host's agent reports the instance `deleted` at `server.delete.committed` —
after the delete is committed and before the server answers, as a hollow agent (no Docker) did
under load — and the DELETE must still answer 202 with the instance as the delete left it.
Before the fix the answer read the row again, found it gone, and answered 404 "instance not
found" for a delete that had succeeded. A create failed at `server.create.committed` likewise
answers 202 with the instance as it was created."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard import faults
from dockyard.config import ServerSettings
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.server.context import ServerContext
from tests.unit.asgi import AppClient

HOST = "h1"


class Api:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        app = create_app(ServerSettings(home=tmp_path / "home",
                                        registry_url="http://127.0.0.1:1"))
        self.ctx: ServerContext = app.state.ctx
        # the registry's seam: every image is in it (no registry process in a unit test)
        monkeypatch.setattr(self.ctx.registry, "resolve",
                            lambda ref: f"{self.ctx.registry.address}/{ref}")
        self.client = AppClient(app)
        self.admin = mint_admin_token(self.ctx.db, init_store(self.ctx.db))
        self.host = mint_host_token(self.ctx.db, HOST)

    def call(self, method: str, url: str, token: str | None = None,
             **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return self.client.request(method, url, headers=headers, **kwargs)


async def _bind(ctx: ServerContext) -> None:
    ctx.notifier.bind(asyncio.get_running_loop())


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    a = Api(tmp_path, monkeypatch)
    asyncio.run(_bind(a.ctx))
    body = {"name": HOST, "api_url": "http://127.0.0.1:1", "api_secret": "s",
            "inventory": {"cores": [0, 1], "memory_bytes": 4 << 30}}
    assert a.call("POST", "/v1/agent/register", a.host, json=body).status_code == 200
    assert a.call("POST", "/v1/networks", json={"name": "default",
                                                "subnet": "10.240.0.0/24"}).status_code == 201
    yield a
    faults.install(None)
    a.ctx.db.close()


def _running(api: Api, name: str) -> dict[str, Any]:
    resp = api.call("POST", "/v1/instances", json={"name": name, "image": "busybox:1"})
    assert resp.status_code == 202, resp.text
    shown = resp.json()
    report = {"state": "running", "container_id": "c1", "generation": shown["generation"]}
    resp = api.call("POST", f"/v1/agent/instances/{shown['id']}/report", api.host, json=report)
    assert resp.status_code == 204, resp.text
    return dict(api.call("GET", f"/v1/instances/{name}").json())


def _agent_finishes_first(api: Api, shown: dict[str, Any]) -> list[int]:
    """At `server.delete.committed` the agent reports the instance deleted (the row goes);
    returns the statuses of those reports."""
    statuses: list[int] = []

    def hook(point: str) -> None:
        if point == "server.delete.committed":
            report = {"state": "deleted", "generation": shown["generation"]}
            statuses.append(api.call("POST", f"/v1/agent/instances/{shown['id']}/report",
                                     api.host, json=report).status_code)
    faults.install(hook)
    return statuses


@pytest.mark.parametrize("wait", [False, True])
def test_a_delete_the_agent_finished_before_the_answer_answers_as_deleted(
        api: Api, wait: bool) -> None:
    shown = _running(api, "web")
    assert shown["state"] == "running"
    reports = _agent_finishes_first(api, shown)
    resp = api.call("DELETE", f"/v1/instances/{shown['id']}",
                    params={"force": "true", "wait": str(wait).lower()})
    assert reports == [204]  # the agent's report came first and removed the row
    assert api.call("GET", f"/v1/instances/{shown['id']}").status_code == 404
    assert resp.status_code == (200 if wait else 202), resp.text
    body = resp.json()
    assert (body["id"], body["name"]) == (shown["id"], "web")
    assert body["operation"]
    if not wait:  # the instance as the delete left it
        assert (body["state"], body["desired_state"]) == ("deleting", "deleted")
    op = api.call("GET", f"/v1/operations/{body['operation']}")
    assert (op.status_code, op.json()["status"]) == (200, "success"), op.text


def test_a_second_delete_of_a_deleted_instance_is_404(api: Api) -> None:
    """The API stays as it was: a delete of an instance that is gone is a 404 (as OpenStack
    answers a second delete); only the answer of the delete that succeeded changed."""
    shown = _running(api, "db")
    _agent_finishes_first(api, shown)
    path = f"/v1/instances/{shown['id']}"
    assert api.call("DELETE", path, params={"force": "true"}).status_code == 202
    again = api.call("DELETE", path, params={"force": "true"})
    assert again.status_code == 404
    assert "not found" in again.json()["error"]["message"]


def test_a_create_the_agent_failed_before_the_answer_answers_as_created(api: Api) -> None:
    """The same race at a create: the agent fails it (`failed_create`, the row goes) at
    `server.create.committed`, before the server answers. The POST (no `wait`) still answers
    202 with the instance as the create made it; the failure is the operation's and the
    `create_failed` event's to tell, not a 404 for an accepted create."""
    reports: list[int] = []

    def hook(point: str) -> None:
        if point == "server.create.committed":
            row = api.call("GET", "/v1/instances/box")
            report = {"state": "deleted", "generation": 1, "failed_create": True,
                      "message": "pull failed"}
            reports.append(api.call("POST", f"/v1/agent/instances/{row.json()['id']}/report",
                                    api.host, json=report).status_code)
    faults.install(hook)
    resp = api.call("POST", "/v1/instances", json={"name": "box", "image": "busybox:1"})
    assert reports == [204]  # the agent's report came first and removed the row
    assert api.call("GET", "/v1/instances/box").status_code == 404
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert (body["name"], body["state"], body["generation"]) == ("box", "creating", 1)
    op = api.call("GET", f"/v1/operations/{body['operation']}").json()
    assert (op["status"], op["error"]) == ("failure", "pull failed")
