"""Unknown query parameters of the /v1 API are refused with a 422 naming them and the ones
the call takes, before anything runs (server/strict_query.py): a typo such as `forec=true`
must not delete without `force` semantics checked. The agents' feed keeps the framework's
leniency (machine traffic across versions). On the real app (httpx's ASGI transport, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.config import ServerSettings
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token
from dockyard.server.context import ServerContext
from tests.unit.asgi import AppClient


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppClient, dict[str, str]]]:
    home: Path = tmp_path_factory.mktemp("strict") / "home"
    application = create_app(ServerSettings(home=home, registry_url="http://127.0.0.1:1"))
    ctx: ServerContext = application.state.ctx
    token = mint_admin_token(ctx.db, init_store(ctx.db))
    client, auth = AppClient(application), {"Authorization": f"Bearer {token}"}
    made = client.post("/v1/networks", headers=auth,
                       json={"name": "keep", "subnet": "10.241.1.0/24"})
    assert made.status_code == 201, made.text
    yield client, auth
    ctx.db.close()


def test_a_declared_parameter_is_taken(app: tuple[AppClient, dict[str, str]]) -> None:
    client, auth = app
    resp = client.get("/v1/networks", headers=auth, params={"limit": "5"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(("method", "path", "params"), [
    ("GET", "/v1/networks", {"limit": "5", "bogus": "1"}),
    ("DELETE", "/v1/networks/keep", {"forec": "true"}),
    ("POST", "/v1/networks", {"x": ""})])
def test_an_unknown_parameter_is_a_422_naming_it_and_nothing_runs(
        app: tuple[AppClient, dict[str, str]], method: str, path: str,
        params: dict[str, str]) -> None:
    client, auth = app
    body = {"name": "n1", "subnet": "10.241.0.0/24"} if method == "POST" else None
    resp = client.request(method, path, headers=auth, params=params, json=body)
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    unknown = sorted(set(params) - {"limit"})[0]
    assert f"unknown query parameter {unknown!r}" in message and "this call takes" in message
    names = [n["name"] for n in client.get("/v1/networks", headers=auth).json()["items"]]
    assert "keep" in names and "n1" not in names  # neither deleted nor created


def test_the_agent_feed_is_not_checked(app: tuple[AppClient, dict[str, str]]) -> None:
    """An agent of another version may send a parameter this server does not know: the feed
    answers as before (here 401: no host token), not 422."""
    client, _ = app
    resp = client.get("/v1/agent/watch", params={"since": "0", "newer_agent_flag": "1"})
    assert resp.status_code == 401, resp.text
