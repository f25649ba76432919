"""/v1/repos and /v1/hooks on the real app (httpx's ASGI transport, a SQLite store, no
lifespan: nothing runs the queued builds): the webhook secret shown once, credentials
encrypted at rest and never returned; a signed push queues one build; a bad or missing
signature is a 401 with nothing queued; a replay is dropped; another branch is acknowledged
and ignored; an oversized body is a 413; cancel of a queued build. Uploaded build contexts
(a repository without url): a good archive queues one build and is stored until the build ends (then
deleted); garbage is a 422, a body over the limit a 413, a git repository a 409, each
leaving no build and no archive; `build start` of an upload repository queues nothing."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import sqlite3
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import ServerSettings
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token
from dockyard.server.context import ServerContext
from dockyard.store import builds as store
from tests.unit.asgi import AppClient

SHA = "3f1c2a9d0b8e7f6a5c4d3e2f1a0b9c8d7e6f5a4b"
TOKEN_TEXT = "ghp_private-token-123"


@dataclass
class Api:
    client: AppClient
    ctx: ServerContext
    auth: dict[str, str]
    db: Path

    def count(self, table: str) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def builds(self, repo_id: str) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM builds WHERE repo_id = ?",
                                    (repo_id,)).fetchone()[0])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One app for the module (its start costs a second); each test adds its own repo."""
    home = tmp_path_factory.mktemp("builds") / "home"
    settings = ServerSettings(home=home, registry_url="http://127.0.0.1:1",
                              hook_max_bytes=4096, build_upload_max_bytes=64 << 10)
    app = create_app(settings)
    ctx: ServerContext = app.state.ctx
    project = init_store(ctx.db)
    token = mint_admin_token(ctx.db, project)
    yield Api(AppClient(app), ctx, {"Authorization": f"Bearer {token}"},
              settings.home / "dockyard.db")
    ctx.db.close()


def _add(api: Api, name: str, **extra: Any) -> dict[str, Any]:
    resp = api.client.post("/v1/repos", headers=api.auth,
                           json={"name": name, "url": "git://127.0.0.1:1/shop.git", **extra})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _push(ref: str = "refs/heads/main", after: str = SHA) -> bytes:
    return json.dumps({"ref": ref, "after": after,
                       "head_commit": {"id": after, "message": "v2",
                                       "author": {"name": "Ada"}}}).encode()


def _signed(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Gitea-Signature": sig, "X-Gitea-Event": "push", "X-Gitea-Delivery": delivery,
            "Content-Type": "application/json"}


def test_secret_once_credentials_never(api: Api) -> None:
    repo = _add(api, "shop", credentials=TOKEN_TEXT, deploy=["web/app"], memory="512M", cpus=1.5)
    assert len(repo["webhook_secret"]) >= 32 and repo["image"] == "default/shop"
    assert (repo["memory_bytes"], repo["cpus"]) == (512 << 20, 1.5)
    shown = api.client.get(f"/v1/repos/{repo['id']}", headers=api.auth).json()
    listed = api.client.get("/v1/repos", headers=api.auth).json()["items"]
    for view in (shown, *listed):
        text = json.dumps(view)
        assert repo["webhook_secret"] not in text and TOKEN_TEXT not in text
        assert view["has_credentials"] is True
    with sqlite3.connect(api.db) as conn:  # at rest: encrypted
        stored = " ".join(map(str, conn.execute("SELECT * FROM repos WHERE id = ?",
                                                (repo["id"],)).fetchone()))
    assert TOKEN_TEXT not in stored and repo["webhook_secret"] not in stored
    dup = api.client.post("/v1/repos", headers=api.auth,
                          json={"name": "shop", "url": "git://127.0.0.1:1/x.git"})
    assert dup.status_code == 409


@pytest.mark.parametrize("body", [{"name": "x", "url": "not a url"},
                                  {"name": "x", "url": "git://h/x.git", "dockerfile": "../x"},
                                  {"name": "x", "url": "git://h/x.git", "deploy": ["nope"]},
                                  {"name": "x", "url": "git://h/x.git", "timeout": 1e9},
                                  {"name": "x", "url": "git://h/x.git", "memory": "3G"},
                                  {"name": "x", "url": "git://h/x.git", "cpus": 2.5},
                                  {"name": "x", "url": "git://h/x.git", "memory": "1K"},
                                  {"name": "x", "url": "git://h/x.git", "cpus": 0}])
def test_bad_repositories_are_refused_and_store_nothing(api: Api, body: dict[str, Any]) -> None:
    """422 for what the schema refuses; 409 for a timeout, memory or CPUs over this server's
    build limits (1800 s, 2G, 2 CPUs: values the schema accepts, the limits are settings)."""
    resp = api.client.post("/v1/repos", headers=api.auth, json=body)
    over = body.get("timeout") or body.get("memory") == "3G" or body.get("cpus") == 2.5
    assert resp.status_code == (409 if over else 422), resp.text
    assert api.client.get("/v1/repos/x", headers=api.auth).status_code == 404


def test_signed_push_queues_one_build_and_a_replay_is_dropped(api: Api) -> None:
    repo = _add(api, "pushed")
    body = _push()
    resp = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                           headers=_signed(repo["webhook_secret"], body, "d-1"))
    assert resp.status_code == 200 and resp.json()["queued"] is True, resp.text
    build = api.client.get(f"/v1/builds/{resp.json()['build']}", headers=api.auth).json()
    assert (build["commit"], build["author"], build["state"], build["repo"]) == \
        (SHA, "Ada", "queued", "pushed")
    for delivery in ("d-1", "d-2"):  # the same id, or the same signed body under a new one
        again = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                                headers=_signed(repo["webhook_secret"], body, delivery))
        assert again.status_code == 200 and again.json()["queued"] is False
        assert "replay" in again.json()["reason"]
    assert api.builds(repo["id"]) == 1


def test_bad_or_missing_signature_is_401_and_queues_nothing(api: Api) -> None:
    repo = _add(api, "forged")
    body = _push()
    forged = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                             headers=_signed("guessed", body, "d-1"))
    bare = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                           headers={"X-Gitea-Event": "push"})
    assert forged.status_code == bare.status_code == 401
    assert forged.json()["error"]["code"] == "unauthorized"
    assert api.builds(repo["id"]) == 0
    # the forged attempt did not burn the delivery id: the real one still queues
    real = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                           headers=_signed(repo["webhook_secret"], body, "d-1"))
    assert real.json()["queued"] is True


def test_another_branch_is_acknowledged_and_ignored(api: Api) -> None:
    repo = _add(api, "branchy")
    body = _push("refs/heads/feature")
    resp = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                           headers=_signed(repo["webhook_secret"], body, "d-1"))
    assert resp.status_code == 200 and resp.json()["queued"] is False
    assert "refs/heads/feature" in resp.json()["reason"]
    assert api.builds(repo["id"]) == 0


def test_oversized_body_is_413_and_unknown_repo_404(api: Api) -> None:
    repo = _add(api, "big")
    body = b"{" + b" " * 5000 + b"}"
    resp = api.client.post(f"/v1/hooks/{repo['id']}", content=body,
                           headers=_signed(repo["webhook_secret"], body, "d-1"))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_large"
    body = _push()
    assert api.client.post("/v1/hooks/nosuchrepo", content=body,
                           headers=_signed("x", body, "d-1")).status_code == 404
    assert api.builds(repo["id"]) == 0


def test_manual_start_cancel_and_listing(api: Api) -> None:
    repo = _add(api, "manual")
    started = api.client.post("/v1/repos/manual/builds", headers=api.auth, json={"ref": "v1.0"})
    assert started.status_code == 202, started.text
    build = started.json()
    assert (build["ref"], build["branch"], build["trigger"]) == ("v1.0", None, "manual")
    listed = api.client.get("/v1/builds", headers=api.auth, params={"repo": "manual"}).json()
    assert [b["id"] for b in listed["items"]] == [build["id"]]
    cancelled = api.client.post(f"/v1/builds/{build['id']}/cancel", headers=api.auth)
    assert cancelled.json()["state"] == "cancelled"
    again = api.client.post(f"/v1/builds/{build['id']}/cancel", headers=api.auth)
    assert again.status_code == 409
    assert api.client.request("DELETE", "/v1/repos/manual",
                              headers=api.auth).status_code == 204
    assert api.builds(repo["id"]) == 0


# --- uploaded build contexts -------------------------------------------------------------------

Body = bytes | Callable[[], AsyncIterator[bytes]]
DOCKERFILE = b"FROM registry:5000/dockyard/busybox\nCOPY . /app\n"


def _tar(*files: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _upload_repos(api: Api) -> None:
    """`web` builds uploaded archives (no url); `gitrepo` builds from git."""
    for name, url in (("web", None), ("gitrepo", "git://127.0.0.1:1/x.git")):
        if api.client.get(f"/v1/repos/{name}", headers=api.auth).status_code == 404:
            _add(api, name, url=url)


def _upload(api: Api, repo: str, body: Body) -> tuple[int, str]:
    _upload_repos(api)
    content = body() if callable(body) else body
    resp = api.client.post(f"/v1/repos/{repo}/builds/upload", headers=api.auth, content=content)
    return resp.status_code, resp.text


async def _chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
    for _ in range(80):
        yield b"\0" * 1024


@pytest.mark.parametrize(("repo", "body", "status", "says"), [
    ("web", b"garbage, not a tar archive" * 20, 422, "not a tar archive"),
    ("web", _tar(("../x", b"x"), ("Dockerfile", DOCKERFILE)), 422, "outside the archive"),
    ("web", _tar(("main.sh", b"x")), 422, "no Dockerfile"),
    ("web", b"\0" * (65 << 10), 413, "build context over 65536 bytes"),
    ("web", _chunks, 413, "build context over 65536 bytes"),
    ("gitrepo", _tar(("Dockerfile", DOCKERFILE)), 409, "builds from git://"),
    ("nosuch", _tar(("Dockerfile", DOCKERFILE)), 404, "not found"),
])
def test_bad_uploads_are_refused_and_leave_nothing(
        api: Api, repo: str, body: Body, status: int, says: str) -> None:
    before = api.count("builds"), api.count("build_archives")
    code, text = _upload(api, repo, body)
    assert code == status and says in text, text
    assert (api.count("builds"), api.count("build_archives")) == before


def test_an_upload_queues_a_build_whose_archive_lives_until_it_ends(api: Api) -> None:
    data = _tar(("Dockerfile", DOCKERFILE), ("app/main.sh", b"echo hi\n"))
    code, _ = _upload(api, "web", data)
    assert code == 202
    builds = api.client.get("/v1/builds", headers=api.auth, params={"repo": "web"}).json()
    build = builds["items"][0]
    digest = hashlib.sha256(data).hexdigest()
    assert (build["state"], build["trigger"], build["ref"], build["branch"]) == (
        "queued", "upload", f"sha256:{digest}", None)
    with api.ctx.db.read() as sess:
        assert store.archive_digest(sess, build["id"]) == digest
        assert store.archive_data(sess, build["id"]) == data
    resp = api.client.post(f"/v1/builds/{build['id']}/cancel", headers=api.auth)
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled", resp.text
    with api.ctx.db.read() as sess:
        assert store.archive_data(sess, build["id"]) is None
    assert api.count("build_archives") == 0


def test_pushes_and_build_start_of_an_upload_repository_queue_nothing(api: Api) -> None:
    _upload_repos(api)
    before = api.count("builds")
    resp = api.client.post("/v1/repos/web/builds", headers=api.auth, json={})
    assert resp.status_code == 409 and "builds uploaded archives" in resp.text, resp.text
    assert api.count("builds") == before
