"""The agent API's authentication on its real app (httpx's ASGI transport, a fake engine at
the Docker seam): the host secret on every route, and the one-time transfer tokens a peer
agent reads volumes with (used once, within their lifetime, for the volumes they name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters.lxcfs import Lxcfs
from dockyard.agent import transfer
from dockyard.agent.api import create_agent_app
from tests.unit.asgi import AppClient
from tests.unit.fakes import FakeEngine

SECRET = "s3cret-of-this-host"
VOLUMES = ("dyv-mine", "dyv-other")


class VolumeEngine(FakeEngine):
    """The fake engine with local volumes: directories under `root`."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def volume_path(self, name: str, create: bool = False) -> str:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return str(path)

    def image_exists(self, ref: str) -> bool:
        return ref in self.images


@pytest.fixture
def agent(tmp_path: Path) -> AppClient:
    engine = VolumeEngine(tmp_path / "volumes")
    engine.root.mkdir()
    for name in VOLUMES:
        (Path(engine.volume_path(name)) / "data.txt").write_text(name)
    app = create_agent_app(engine, SECRET, "cluster-1", Lxcfs(str(tmp_path / "lxcfs")),
                           registry="127.0.0.1:1", home=tmp_path / "home")
    return AppClient(app)


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/images/exists?ref=img", {}),
    ("GET", "/v1/images", {}),
    ("GET", "/v1/host-paths/check?path=/srv&root=/srv", {}),
    ("POST", "/v1/instances/i1/exec", {"json": {"command": ["true"]}}),
    ("GET", "/v1/instances/i1/logs", {}),
    ("DELETE", "/v1/volumes/dyv-mine", {}),
    ("GET", "/v1/volumes/dyv-mine/paths", {}),
    ("GET", "/v1/volumes/dyv-mine/archive", {}),
    ("POST", "/v1/transfer/tokens", {"json": {"token": "t", "volumes": ["dyv-mine"]}}),
    ("POST", "/v1/volumes/dyv-mine/pull", {"json": {"source_url": "http://127.0.0.1:1",
                                                    "token": "t"}}),
    ("POST", "/v1/instances/i1/discard?generation=1", {}),
    ("GET", "/v1/doctor", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_missing_or_wrong_secret_is_refused(agent: AppClient, method: str, path: str,
                                               kwargs: dict[str, Any]) -> None:
    for headers in ({}, _auth("wrong"), _auth(SECRET + "x"), {"Authorization": SECRET},
                    {"Authorization": f"Basic {SECRET}"}):
        reply = agent.request(method, path, headers=headers, **kwargs)
        assert reply.status_code == 401, (headers, reply.text)
        assert reply.json()["error"]["code"]


def test_the_secret_is_accepted(agent: AppClient) -> None:
    reply = agent.get("/v1/images/exists?ref=img", headers=_auth(SECRET))
    assert reply.status_code == 200 and reply.json() == {"exists": True}


def _grant(agent: AppClient, token: str, volumes: list[str]) -> None:
    reply = agent.post("/v1/transfer/tokens", headers=_auth(SECRET),
                       json={"token": token, "volumes": volumes})
    assert reply.status_code == 204


def test_a_transfer_token_reads_each_granted_volume_once(agent: AppClient) -> None:
    _grant(agent, "tok-1", ["dyv-mine"])
    first = agent.get("/v1/volumes/dyv-mine/paths", params={"token": "tok-1"})
    assert first.status_code == 200 and first.json() == ["data.txt"]
    again = agent.get("/v1/volumes/dyv-mine/paths", params={"token": "tok-1"})
    assert again.status_code == 401
    archive = agent.get("/v1/volumes/dyv-mine/archive", params={"token": "tok-1"})
    assert archive.status_code == 200 and b"data.txt" in archive.content  # its own right
    assert agent.get("/v1/volumes/dyv-mine/archive",
                     params={"token": "tok-1"}).status_code == 401


def test_a_transfer_token_reads_only_the_volumes_it_names(agent: AppClient) -> None:
    _grant(agent, "tok-2", ["dyv-mine"])
    for path in ("/v1/volumes/dyv-other/archive", "/v1/volumes/dyv-other/paths"):
        reply = agent.get(path, params={"token": "tok-2"})
        assert reply.status_code == 401
        assert "transfer token" in reply.json()["error"]["message"]
    assert agent.get("/v1/volumes/dyv-other/paths", params={"token": "unknown"}).status_code \
        == 401
    assert agent.get("/v1/volumes/dyv-mine/paths", params={"token": "tok-2"}).status_code \
        == 200  # the named one still reads


def test_an_expired_transfer_token_is_refused(agent: AppClient,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "TOKEN_TTL", -1.0)  # granted already past its lifetime
    _grant(agent, "tok-3", ["dyv-mine"])
    reply = agent.get("/v1/volumes/dyv-mine/paths", params={"token": "tok-3"})
    assert reply.status_code == 401


def test_a_transfer_token_is_not_the_host_secret(agent: AppClient) -> None:
    _grant(agent, "tok-4", ["dyv-mine"])
    for method, path, kwargs in ROUTES:
        if "/paths" in path or "/archive" in path:
            continue
        reply = agent.request(method, path, headers=_auth("tok-4"), **kwargs)
        assert reply.status_code == 401, (method, path)
