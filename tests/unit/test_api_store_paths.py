"""The API routers on the real app (httpx's ASGI transport, a SQLite store, no lifespan) over
the store's query functions (issue 17): what each answers — pages and their cursors, 409 on a
taken name, 404 across projects, deletes — so moving their SQL into the store changed no
behaviour (these tests pass on the routers before and after the move)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.config import ServerSettings
from dockyard.server.app import create_app
from dockyard.server.auth import Caller
from dockyard.server.bootstrap import init_store, mint_admin_token
from dockyard.server.context import ServerContext
from dockyard.server.routers import cluster
from tests.unit.asgi import AppClient


@dataclass
class Api:
    client: AppClient
    ctx: ServerContext
    admin: str
    member: str  # a member of project `blue`

    def call(self, method: str, url: str, token: str | None = None,
             **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return self.client.request(method, url, headers=headers, **kwargs)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    app = create_app(ServerSettings(home=tmp_path / "home", registry_url="http://127.0.0.1:1"))
    ctx: ServerContext = app.state.ctx
    admin = mint_admin_token(ctx.db, init_store(ctx.db))
    client = AppClient(app)
    api = Api(client, ctx, admin, "")
    assert api.call("POST", "/v1/projects", json={"name": "blue"}).status_code == 201
    made = api.call("POST", "/v1/tokens", json={"project": "blue", "role": "member"})
    api.member = made.json()["token"]
    yield api
    ctx.db.close()


def _walk(api: Api, url: str, token: str | None = None) -> list[list[str]]:
    """Every page of a listing with limit=2, following `next`; the names of each page."""
    pages, after = [], ""
    while True:
        body = api.call("GET", f"{url}?limit=2&after={after}", token).json()
        pages.append([i["name"] for i in body["items"]])
        if body["next"] is None:
            return pages
        after = body["next"]


def test_projects_tokens_and_whoami(api: Api) -> None:
    assert api.call("POST", "/v1/projects", json={"name": "blue"}).status_code == 409
    names = [p["name"] for p in api.call("GET", "/v1/projects").json()["items"]]
    assert names == ["blue", "default"]
    assert [p["name"] for p in api.call("GET", "/v1/projects", api.member).json()["items"]] \
        == ["blue"]
    assert api.call("GET", "/v1/projects/default", api.member).status_code == 404
    quota = api.call("PUT", "/v1/projects/blue/quota", json={"volumes": 2})
    assert quota.status_code == 200 and quota.json()["limits"]["volumes"] == 2
    assert api.call("GET", "/v1/projects/blue/quota", api.member).json()["limits"]["volumes"] == 2
    who = api.call("GET", "/v1/whoami", api.member).json()
    assert (who["role"], who["project"]) == ("member", "blue")
    listed = api.call("GET", "/v1/tokens?project=blue").json()["items"]
    assert [(t["id"], t["project"]) for t in listed] == [(who["token_id"], "blue")]
    admin_id = api.call("GET", "/v1/whoami").json()["token_id"]
    assert api.call("DELETE", f"/v1/tokens/{admin_id}").status_code == 409  # the last admin
    assert api.call("DELETE", f"/v1/tokens/{who['token_id']}").status_code == 204
    assert api.call("GET", "/v1/whoami", api.member).status_code == 401


def test_networks(api: Api) -> None:
    for i, name in enumerate(("n-c", "n-a", "n-b")):
        made = api.call("POST", "/v1/networks", json={"name": name,
                                                     "subnet": f"10.{i + 50}.0.0/24"})
        assert made.status_code == 201, made.text
    assert made.json()["vlan"] == 1002 and made.json()["gateway"] == "10.52.0.1"
    assert api.call("POST", "/v1/networks", json={"name": "n-a", "subnet": "10.60.0.0/24"}
                    ).status_code == 409
    overlap = api.call("POST", "/v1/networks", json={"name": "n-d", "subnet": "10.50.0.0/16"})
    assert overlap.status_code == 409 and "overlaps network n-c" in overlap.text
    assert api.call("POST", "/v1/networks", json={"name": "n-e", "subnet": "10.61.0.0/24",
                                                  "vlan": 1000}).status_code == 409
    assert _walk(api, "/v1/networks") == [["n-a", "n-b"], ["n-c"]]
    assert _walk(api, "/v1/networks", api.member) == [[]]  # the admins' own, not shared
    assert api.call("GET", "/v1/networks/n-a", api.member).status_code == 404
    assert api.call("GET", "/v1/networks/n-a").json()["instances"] == 0
    assert api.call("DELETE", "/v1/networks/n-a").status_code == 204
    assert _walk(api, "/v1/networks") == [["n-b", "n-c"]]


def test_volumes(api: Api) -> None:
    for name in ("v-c", "v-a", "v-b"):
        assert api.call("POST", "/v1/volumes", api.member, json={"name": name}
                        ).status_code == 201
    assert api.call("POST", "/v1/volumes", api.member, json={"name": "v-a"}).status_code == 409
    assert _walk(api, "/v1/volumes", api.member) == [["v-a", "v-b"], ["v-c"]]
    assert _walk(api, "/v1/volumes") == [[]]  # the admin's project has none
    assert api.call("GET", "/v1/volumes/v-a").status_code == 404
    assert api.call("DELETE", "/v1/volumes/v-a", api.member).status_code == 204
    assert api.call("GET", "/v1/volumes/v-a", api.member).status_code == 404
    assert _walk(api, "/v1/volumes", api.member) == [["v-b", "v-c"]]


def test_alert_rules_and_webhooks(api: Api) -> None:
    rule = {"kind": "oom", "threshold": 1}
    assert api.call("POST", "/v1/alerts/rules", json={"name": "everyone", **rule}
                    ).status_code == 201
    assert api.call("POST", "/v1/alerts/rules", api.member, json={"name": "mine", **rule}
                    ).status_code == 201
    assert api.call("POST", "/v1/alerts/rules", api.member, json={"name": "mine", **rule}
                    ).status_code == 409
    seen = api.call("GET", "/v1/alerts/rules", api.member).json()["items"]
    assert [r["name"] for r in seen if not r["builtin"]] == ["everyone", "mine"]
    assert {r["project"] for r in seen} == {None, "blue"}
    assert api.call("DELETE", "/v1/alerts/rules/everyone", api.member).status_code == 404
    assert api.call("DELETE", "/v1/alerts/rules/mine", api.member).status_code == 204
    hook = api.call("POST", "/v1/webhooks", api.member, json={"url": "http://127.0.0.1:9/x"})
    assert hook.status_code == 201 and hook.json()["project"] == "blue"
    assert [w["id"] for w in api.call("GET", "/v1/webhooks").json()["items"]] \
        == [hook.json()["id"]]
    assert api.call("DELETE", f"/v1/webhooks/{hook.json()['id']}").status_code == 204
    assert api.call("GET", "/v1/webhooks", api.member).json()["items"] == []
    assert api.call("GET", "/v1/alerts?state=all").json() == {"items": [], "next": None}


def test_hosts_events_and_operations(api: Api) -> None:
    for name in ("h-b", "h-a", "h-c"):
        assert api.call("POST", "/v1/hosts", json={"name": name}).status_code == 201
    assert api.call("POST", "/v1/hosts", json={"name": "h-a"}).status_code == 409
    assert [h["name"] for h in api.call("GET", "/v1/hosts").json()["items"]] \
        == ["h-a", "h-b", "h-c"]
    assert api.call("POST", "/v1/hosts/h-a/drain").json()["draining"] is True
    assert api.call("DELETE", "/v1/hosts/h-c").json() == {"name": "h-c", "deleted": True}
    # the page behind GET /v1/events (its long poll needs the lifespan's event loop)
    admin, member = Caller("admin", "p", None), Caller("member", "p", None)
    kinds, after = [], 0
    while True:  # the admin sees the hosts' events (no project), two at a time
        page = cluster._events_page(api.ctx, admin, after, 2)
        kinds += [e["kind"] for e in page["items"]]
        if page["next"] is None:
            break
        assert len(page["items"]) == 2
        after = int(page["next"])
    assert kinds == ["host_added"] * 3 + ["host_drain", "host_removed"]
    assert cluster._events_page(api.ctx, member, 0, 100) == {"items": [], "next": None}
    assert api.call("GET", "/v1/operations/nope").status_code == 404
    assert api.call("GET", "/v1/instances", api.member).json() == {"items": [], "next": None}
    assert api.call("GET", "/v1/stats", api.member).json() == {"items": []}
