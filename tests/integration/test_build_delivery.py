"""From a git push to the new version serving (issue #13's end-to-end acceptance): a real git
server (`git daemon`, a post-receive hook sending signed Gitea webhooks), a Dockyard whose
agent runs the HTTP entrance (HAProxy), a repository with `--deploy site/web`.

A push of v2 builds the image, rolls it out over the two replicas (health-gated) and the
entrance serves v2, while a client sending a request every 20 ms sees no failed request; a
push with a broken Dockerfile fails and v2 keeps serving; a push whose image fails its
healthcheck builds, rolls out, and is rolled back by itself (v2 serving again)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard, leaks
from tests.integration.gitserver import SERVING, SITE_COMPOSE, GitServer, install_hook, serve_git
from tests.integration.test_entrance import Client, _body, until, with_entrance

HOST = "site.example"


def _served(port: int) -> str:
    return _body(port, HOST)


def dockerfile(dy: Dockyard, cmd: str = SERVING, run: str = "true") -> str:
    return (f"FROM {dy.registry}/{IMAGE}\nRUN mkdir -p /www && {run}\n"
            f"COPY version.txt /www/index.html\n{cmd}")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dockyard, int, GitServer]]:
    """A Dockyard with the entrance on its own port, the git server, repository `site`."""
    with with_entrance() as (env, port):
        try:
            env.ok("image", "push", IMAGE)  # the base image, into the cluster registry
            with serve_git(tmp_path_factory.mktemp("gitsite")) as git:
                added = env.ok("repo", "add", "site", "--url", git.url, "--deploy",
                               "site/web", "--json").json()
                install_hook(git, env, added["id"], added["webhook_secret"])
                yield env, port, git
        finally:
            env.cli("stack", "rm", "site")


def _build_of(dy: Dockyard, commit: str, timeout: float = 120) -> dict[str, Any]:
    """The finished build of `commit` (it ends once its rollout is recorded)."""
    deadline = time.monotonic() + timeout
    while True:
        items = dy.ok("build", "ls", "site", "--json").json()["items"]
        done = [b for b in items if b["commit"] == commit
                and b["state"] in ("succeeded", "failed", "cancelled")]
        if done:
            return dict(done[0])
        assert time.monotonic() < deadline, items
        time.sleep(0.3)


def _service_image(dy: Dockyard) -> str:
    return str(dy.ok("stack", "show", "site", "--json").json()["services"][0]["image"])


def test_a_push_is_built_rolled_out_and_served(edge: tuple[Dockyard, int, GitServer],
                                               tmp_path: Path) -> None:
    dy, port, git = edge
    v1 = _build_of(dy, git.push(dockerfile(dy), "v1"))
    assert v1["state"] == "succeeded", dy.ok("build", "logs", v1["id"]).out
    assert "site/web: failed: stack 'site' not found" in (v1["rollout"] or ""), v1
    compose = tmp_path / "compose.yaml"
    compose.write_text(SITE_COMPOSE.format(image=v1["image"], host=HOST))
    dy.ok("stack", "deploy", "site", "-f", str(compose))
    client = Client(port, HOST)
    thread = threading.Thread(target=client.run, daemon=True)
    try:
        until("v1 on both replicas behind the entrance",
              lambda: _served(port) == "v1" and _healthy(dy) == 2, 60)
        start = time.monotonic()
        thread.start()

        # v2: pushed, built, rolled out replica by replica, served: no request fails
        v2 = _build_of(dy, git.push(dockerfile(dy), "v2"))
        assert v2["state"] == "succeeded", dy.ok("build", "logs", v2["id"]).out
        assert v2["rollout"].startswith("site/web: version 2"), v2["rollout"]
        pushed_v2 = time.monotonic()
        until("only v2 served", lambda: client.served_since(time.monotonic() - 1) == {"v2"}
              and _service_image(dy) == v2["image"], 90)
        assert client.failures == [], client.failures[:5]
        assert client.served_since(start) >= {"v1", "v2"}

        # a broken Dockerfile: the build fails at its step, v2 keeps serving
        broken = _build_of(dy, git.push(dockerfile(dy, run="exit 7"), "v3-broken"))
        assert broken["state"] == "failed" and "non-zero code: 7" in broken["error"]
        assert broken["rollout"] is None and _service_image(dy) == v2["image"]
        assert client.served_since(pushed_v2) == {"v2"}
        assert client.failures == [], client.failures[:5]

        # an image that never becomes healthy: built, rolled out, rolled back by itself
        sick = _build_of(dy, git.push(dockerfile(dy, cmd='CMD ["sleep", "3600"]\n'), "v4-sick"))
        assert sick["state"] == "succeeded", sick
        assert sick["rollout"].startswith("site/web: version "), sick["rollout"]
        until("the rollback to v2", lambda: _service_image(dy) == v2["image"]
              and _replica_images(dy) == {v2["image"]}, 90)
        after = time.monotonic()
        until("v2 served after the rollback",
              lambda: client.served_since(after) == {"v2"}, 30)
    finally:
        client.stopping.set()
        if thread.is_alive():
            thread.join(timeout=15)
    assert leaks(dy) == []


def _healthy(dy: Dockyard) -> int:
    return sum(1 for r in dy.ok("stack", "ps", "site", "--json").json()["items"]
               if r["state"] == "running" and r["health"] == "healthy")


def _replica_images(dy: Dockyard) -> set[str]:
    rows = dy.db_query("SELECT image, state FROM instances WHERE name LIKE 'site-web-%'")
    return {image for image, state in rows if state == "running"}
