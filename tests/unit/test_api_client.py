"""The typed client of the server's API (client.ApiClient) against a fake server at its seam,
the httpx transport (HttpxTransport over an httpx.MockTransport): pages and cursors, the error
tree from replies, and the CLI's list commands (`network list`, `volume list`, `list`,
`events`, `alert list`, and their `--json`) reading every page.

The fake serves a list the way the server's routers do (sorted by name, `after` = the last
name of the previous page, `next` = the last name of this page while more follow) but caps a
page at PAGE items, as a server may: a client that reads one page sees only PAGE of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from dockyard.cli import alerts, instances, networks, volumes
from dockyard.client import ApiClient, HttpxTransport, NetworkItem, Page, VolumeItem
from dockyard.errors import BackendError, DockyardError, NotFound, TemporaryError
from dockyard.model.network import Network
from dockyard.model.volume import Volume

URL = "http://dockyard.test:8443"
PAGE = 2


def network(name: str) -> dict[str, Any]:
    return {"id": f"id-{name}", "name": name, "project": "default", "subnet": "10.9.0.0/24",
            "gateway": "10.9.0.1", "dns": [], "mode": "bridge", "vlan": None,
            "shared": False, "nat": False, "bridge": f"dy-{name}", "instances": 0,
            "created_at": "2026-12-07T00:00:00Z"}


def volume(name: str) -> dict[str, Any]:
    return {"id": f"id-{name}", "name": name, "project": "default", "host": "h1",
            "docker_name": f"dyv-{name}", "attached_to": [], "created_at": "2026-12-07T00:00:00Z"}


class FakeServer:
    """The list endpoints of the API, and a record of the requests they got."""

    def __init__(self, networks: list[str], volumes: list[str]) -> None:
        self.lists = {"/v1/networks": [network(n) for n in sorted(networks)],
                      "/v1/volumes": [volume(n) for n in sorted(volumes)],
                      "/v1/instances": [{"name": n} for n in sorted(volumes)],
                      "/v1/events": [{"name": n, "id": i} for i, n in enumerate(sorted(volumes))],
                      "/v1/alerts": [{"name": n} for n in sorted(networks)]}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"] == "Bearer tok"
        rows = self.lists.get(request.url.path)
        if rows is None:
            return httpx.Response(404, json={"error": {"code": "not_found",
                                                       "message": "no such list"}})
        limit = min(int(request.url.params.get("limit", "100")), PAGE)
        after = request.url.params.get("after", "")
        rest = [r for r in rows if r["name"] > after]
        page = rest[:limit]
        return httpx.Response(200, json={"items": page,
                                         "next": page[-1]["name"] if len(rest) > limit else None})


def api(handler: Callable[[httpx.Request], httpx.Response]) -> ApiClient:
    return ApiClient(URL, "tok", transport=HttpxTransport(
        URL, "tok", 60.0, None, transport=httpx.MockTransport(handler)))


def test_pages_follow_the_cursor_to_the_end() -> None:
    server = FakeServer(["n1", "n2", "n3", "n4", "n5"], [])
    with api(server) as client:
        pages = list(client.pages("/v1/networks", NetworkItem, limit=1000))
    assert [[n["name"] for n in p.items] for p in pages] == [["n1", "n2"], ["n3", "n4"], ["n5"]]
    assert [p.next for p in pages] == ["n2", "n4", None]
    assert [r.url.params.get("after") for r in server.requests] == [None, "n2", "n4"]
    assert all(r.url.params["limit"] == "1000" for r in server.requests)


def test_one_page_is_typed_and_keeps_its_cursor() -> None:
    with api(FakeServer(["a", "b", "c"], [])) as client:
        page = client.page("/v1/networks", NetworkItem, after="a")
    assert page == Page(items=[network("b"), network("c")], next=None)


def test_list_all_starts_after_a_given_cursor() -> None:
    with api(FakeServer([], ["v1", "v2", "v3", "v4", "v5", "v6"])) as client:
        names = [v["name"] for v in client.list_all("/v1/volumes", VolumeItem, after="v1")]
    assert names == ["v2", "v3", "v4", "v5", "v6"]


def test_a_reply_that_is_not_a_page_is_an_error() -> None:
    with api(lambda _: httpx.Response(200, json={"name": "x"})) as client, \
            pytest.raises(DockyardError, match="not a list page"):
        client.page("/v1/networks", NetworkItem)


@pytest.mark.parametrize(("item", "model"), [(NetworkItem, Network), (VolumeItem, Volume)])
def test_the_typed_items_name_the_fields_of_the_api_models(item: type, model: type) -> None:
    """The TypedDicts stay light (no pydantic on the CLI path) but must not drift from the
    server's models."""
    assert set(item.__annotations__) == set(model.model_fields)


def test_an_error_reply_raises_the_servers_error_and_transport_failures_name_the_server(
        ) -> None:
    with api(FakeServer([], [])) as client, pytest.raises(NotFound, match="no such list"):
        client.get("/v1/nothing")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)
    with api(refuse) as client, pytest.raises(BackendError) as caught:
        client.get("/v1/networks")
    assert caught.value.message == (f"cannot reach Dockyard at {URL}: connection refused")


def test_a_stream_refused_with_a_page_that_is_not_json_is_still_an_error_of_the_tree() -> None:
    """`logs` through a proxy that answers 503 with an HTML page."""
    with api(lambda _: httpx.Response(503, text="<h1>busy</h1>")) as client, \
            pytest.raises(TemporaryError) as caught:
        list(client.stream("/v1/instances/web/logs", follow="false"))
    assert caught.value.message == "HTTP 503: <h1>busy</h1>"


def test_upload_streams_the_file_and_reads_the_reply(tmp_path: Any) -> None:
    got: list[bytes] = []

    def receive(request: httpx.Request) -> httpx.Response:
        got.append(request.read())
        return httpx.Response(200, json={"ref": "img:1"})
    archive = tmp_path / "img.tar"
    archive.write_bytes(b"x" * 200_000)
    with api(receive) as client, archive.open("rb") as fh:
        assert client.upload("/v1/images/import", fh, name="img:1") == {"ref": "img:1"}
    assert got == [b"x" * 200_000]


# --- the CLI's list commands ------------------------------------------------------------------

@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    fake = FakeServer([f"net{i}" for i in range(5)], [f"vol{i}" for i in range(7)])
    monkeypatch.setattr(networks, "client", lambda: api(fake))
    monkeypatch.setattr(volumes, "client", lambda: api(fake))
    monkeypatch.setattr(instances, "client", lambda: api(fake))
    monkeypatch.setattr(alerts, "client", lambda: api(fake))
    yield fake


@pytest.mark.parametrize(("app", "names"), [
    (networks.network_app, [f"net{i}" for i in range(5)]),
    (volumes.volume_app, [f"vol{i}" for i in range(7)])], ids=["network", "volume"])
def test_list_commands_read_every_page(server: FakeServer, app: Any, names: list[str]) -> None:
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = [line.split()[0] for line in result.output.splitlines()[1:]]
    assert shown == names
    assert len(server.requests) == len(names) // PAGE + 1

    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [item["name"] for item in listed["items"]] == names
    assert listed["next"] is None


def _root(*commands: tuple[str, Any]) -> typer.Typer:
    app = typer.Typer()
    for name, command in commands:
        app.command(name)(command)
    return app


@pytest.mark.parametrize(("app", "argv", "names"), [
    (_root(("list", instances.list_), ("x", instances.list_)), ["list", "--json"],
     [f"vol{i}" for i in range(7)]),
    (_root(("events", instances.events), ("x", instances.list_)), ["events", "--json"],
     [f"vol{i}" for i in range(7)]),
    (alerts.alert_app, ["list", "--json"], [f"net{i}" for i in range(5)])],
    ids=["list", "events", "alert list"])
def test_json_of_a_list_holds_every_page(server: FakeServer, app: typer.Typer, argv: list[str],
                                         names: list[str]) -> None:
    """`--json` prints the list in the API's shape with every page's items (it printed the
    first page of 1,000 and its cursor)."""
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [item["name"] for item in listed["items"]] == names
    assert listed["next"] is None
    assert len(server.requests) == len(names) // PAGE + 1
