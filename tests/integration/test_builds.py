"""Builds from a real git server (issue #13): a bare repository served by `git daemon` on
loopback, whose `post-receive` hook sends a signed Gitea-format push webhook to Dockyard.

A push builds on the (only, unlabelled) host and pushes REGISTRY/default/NAME:<short sha> and
`:main` (checked through the registry's own API, digest included); a broken Dockerfile
fails with its step and log and pushes nothing (`:main` keeps the previous digest); a base
image not in the registry fails naming it; a forged signature is a 401 and queues nothing; a
replayed delivery is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard, free_port

HOOK = r'''#!{python}
"""post-receive: a signed Gitea push webhook per updated ref (what Gitea sends)."""
import hashlib, hmac, json, ssl, subprocess, sys, urllib.error, urllib.request, uuid
conf = json.load(open({conf!r}))
for line in sys.stdin:
    before, after, ref = line.split()
    fmt = subprocess.run(["git", "log", "-1", "--format=%an%n%s", after], text=True,
                         capture_output=True).stdout.splitlines()
    body = json.dumps({{"ref": ref, "before": before, "after": after,
                       "head_commit": {{"id": after, "message": fmt[1],
                                       "author": {{"name": fmt[0]}}}}}}).encode()
    headers = {{"Content-Type": "application/json", "X-Gitea-Event": "push",
               "X-Gitea-Delivery": str(uuid.uuid4()),
               "X-Gitea-Signature": hmac.new(conf["secret"].encode(), body,
                                             hashlib.sha256).hexdigest()}}
    with open(conf["sent"], "w") as out:  # for the replay test
        json.dump({{"body": body.decode(), "headers": headers}}, out)
    request = urllib.request.Request(conf["url"], data=body, headers=headers, method="POST")
    context = ssl.create_default_context(cafile=conf["ca"])
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            print("dockyard:", reply.status, reply.read().decode())
    except urllib.error.HTTPError as exc:
        print("dockyard:", exc.code, exc.read().decode())
'''


@dataclass
class GitServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    work: Path

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/app.git"

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.test",
               "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.test"}
        return subprocess.run(["git", "-C", str(self.work), *args], check=True, text=True,
                              capture_output=True, env=env).stdout

    def push(self, dockerfile: str, message: str) -> str:
        """Commit `dockerfile` and push it to main; the commit's id."""
        (self.work / "Dockerfile").write_text(dockerfile)
        (self.work / "version.txt").write_text(message + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        out = subprocess.run(["git", "-C", str(self.work), "push", "origin", "main"],
                             capture_output=True, text=True, check=True)
        assert "dockyard: 200" in out.stderr, out.stderr  # the hook's output comes back here
        return self.git("rev-parse", "HEAD").strip()


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, "git daemon exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("git daemon did not listen")


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    root = tmp_path_factory.mktemp("gitsrv")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "app.git")],
                   check=True)
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--export-all", "--enable=receive-pack",
                             "--listen=127.0.0.1", f"--port={port}", "--reuseaddr",
                             f"--base-path={root}", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_port(port, proc)
        work = root / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
        server = GitServer(root, port, proc, work)
        server.git("remote", "add", "origin", server.url)
        yield server
    finally:
        # the daemon and the children it forked per connection: its own process group
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Repo:
    id: str
    secret: str
    sent: Path  # what the hook sent last (body and headers)
    name: str = "app"


@pytest.fixture(scope="module")
def repo(dy: Dockyard, git_server: GitServer) -> Iterator[Repo]:
    dy.ok("image", "push", IMAGE)  # the base image, into the cluster registry
    added = dy.ok("repo", "add", "app", "--url", git_server.url, "--json").json()
    sent = git_server.root / "sent.json"
    conf = git_server.root / "hook.json"
    conf.write_text(json.dumps({"url": f"{dy.url}/v1/hooks/{added['id']}",
                                "secret": added["webhook_secret"], "ca": str(dy.ca),
                                "sent": str(sent)}))
    hook = git_server.root / "app.git" / "hooks" / "post-receive"
    hook.write_text(HOOK.format(python=sys.executable, conf=str(conf)))
    hook.chmod(0o755)
    try:
        yield Repo(added["id"], added["webhook_secret"], sent)
    finally:
        dy.cli("repo", "rm", "app")
        client = docker.from_env()
        try:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(f"{dy.registry}/{IMAGE}")
        finally:
            client.close()


def _builds(dy: Dockyard) -> list[dict[str, Any]]:
    return list(dy.ok("build", "ls", "app", "--json").json()["items"])


def _finished(dy: Dockyard, commit: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done = [b for b in _builds(dy) if b["commit"] == commit
                and b["state"] in ("succeeded", "failed", "cancelled")]
        if done:
            return done[0]
        assert time.monotonic() < deadline, f"no finished build of {commit}: {_builds(dy)}"
        time.sleep(0.3)


def _registry(dy: Dockyard, path: str, method: str = "GET") -> httpx.Response:
    """The registry's own v2 API behind the server (the token as Basic password)."""
    with httpx.Client(verify=dy.verify, auth=("dockyard", dy.token())) as http:
        return http.request(method, f"{dy.url}/v2/{path}", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})


def _tags(dy: Dockyard) -> list[str]:
    resp = _registry(dy, "default/app/tags/list")
    return list(resp.json().get("tags") or []) if resp.status_code == 200 else []


def _digest(dy: Dockyard, tag: str) -> str | None:
    resp = _registry(dy, f"default/app/manifests/{tag}", "HEAD")
    return resp.headers.get("docker-content-digest") if resp.status_code == 200 else None


def _dockerfile(dy: Dockyard, run: str) -> str:
    return f"FROM {dy.registry}/{IMAGE}\nCOPY version.txt /version.txt\nRUN {run}\n"


def test_a_push_builds_and_pushes_sha_and_branch(dy: Dockyard, git_server: GitServer,
                                                 repo: Repo) -> None:
    commit = git_server.push(_dockerfile(dy, "echo built > /built"), "v1")
    build = _finished(dy, commit)
    assert build["state"] == "succeeded", dy.ok("build", "logs", build["id"]).out
    assert (build["author"], build["message"], build["trigger"]) == ("Ada", "v1", "webhook")
    assert build["image"] == f"{dy.registry}/default/app:{commit[:12]}"
    assert {commit[:12], "main"} <= set(_tags(dy))
    assert build["digest"] and _digest(dy, commit[:12]) == build["digest"]
    assert _digest(dy, "main") == build["digest"]
    log = dy.ok("build", "logs", build["id"]).out
    assert "no host is labelled role=build" in log, log
    assert "Step 3/3 : RUN echo built" in log, log
    # the whole log was stored, in order (the agent's lines numbered from 1)
    lines = dy.db_query("SELECT line_no FROM build_logs WHERE build_id = ? ORDER BY line_no",
                        build["id"])
    assert [n for (n,) in lines] == list(range(1, len(lines) + 1)) and len(lines) > 5
    shown = dy.ok("build", "show", build["id"], "--json").json()
    assert shown["operation"] and shown["duration"] > 0
    with dy.api() as api:
        assert api.get(f"/v1/operations/{shown['operation']}")["status"] == "success"


def test_a_failing_step_fails_the_build_and_pushes_nothing(dy: Dockyard,
                                                           git_server: GitServer,
                                                           repo: Repo) -> None:
    main_before = _digest(dy, "main")
    commit = git_server.push(_dockerfile(dy, "echo about to fail && exit 3"), "broken")
    build = _finished(dy, commit)
    assert build["state"] == "failed"
    assert build["step"] == "Step 3/3 : RUN echo about to fail && exit 3"
    assert "returned a non-zero code: 3" in build["error"]
    log = dy.ok("build", "logs", build["id"]).out
    assert "about to fail" in log and "returned a non-zero code: 3" in log
    assert commit[:12] not in _tags(dy) and _digest(dy, "main") == main_before
    # the step's container went with the build (rm/forcerm)
    client = docker.from_env()
    try:
        leftovers = [c.name for c in client.containers.list(all=True)
                     if "exit 3" in " ".join(c.attrs["Config"].get("Cmd") or [])]
    finally:
        client.close()
    assert leftovers == []


def test_a_base_image_not_in_the_registry_is_named(dy: Dockyard, git_server: GitServer,
                                                   repo: Repo) -> None:
    missing = f"{dy.registry}/dockyard/nosuch:1"
    commit = git_server.push(f"FROM {missing}\nRUN true\n", "no base")
    build = _finished(dy, commit)
    assert build["state"] == "failed" and missing in build["error"]
    assert "not in Dockyard's registry" in build["error"]
    assert commit[:12] not in _tags(dy)


def test_forged_and_replayed_webhooks_queue_nothing(dy: Dockyard, git_server: GitServer,
                                                    repo: Repo) -> None:
    sent = json.loads(repo.sent.read_text())  # the last real delivery
    before = len(_builds(dy))
    url = f"{dy.url}/v1/hooks/{repo.id}"
    with httpx.Client(verify=dy.verify) as http:
        forged = http.post(url, content=(sent["body"] + " ").encode(),  # a changed body
                           headers=sent["headers"])
        replayed = http.post(url, content=sent["body"].encode(), headers=sent["headers"])
        renamed = http.post(url, content=sent["body"].encode(),
                            headers={**sent["headers"], "X-Gitea-Delivery": "another-id"})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "unauthorized"
    assert replayed.status_code == renamed.status_code == 200
    assert replayed.json()["queued"] is False and "replay" in replayed.json()["reason"]
    assert renamed.json()["queued"] is False
    assert len(_builds(dy)) == before


def _state(dy: Dockyard, build_id: str) -> dict[str, Any]:
    return dict(dy.ok("build", "show", build_id, "--json").json())


def _until(dy: Dockyard, build_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (build := _state(dy, build_id))["state"] not in states:
        assert time.monotonic() < deadline, build
        time.sleep(0.2)
    return build


def _build_containers(marker: str) -> list[str]:
    """Containers (any state) whose command holds `marker`: a build step's container."""
    client = docker.from_env()
    try:
        return [c.name for c in client.containers.list(all=True)
                if marker in " ".join(c.attrs["Config"].get("Cmd") or [])]
    finally:
        client.close()


def _by_commit(dy: Dockyard, commit: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not (found := [b for b in _builds(dy) if b["commit"] == commit]):
        assert time.monotonic() < deadline, f"no build of {commit}"
        time.sleep(0.2)
    return found[0]


def test_cancel_queue_supersede_and_follow(dy: Dockyard, git_server: GitServer,
                                          repo: Repo) -> None:
    """A running build is cancelled (its step's container killed); of two pushes queued
    behind it the older is skipped, the newer built; `logs --follow` streams and ends."""
    slow = git_server.push(_dockerfile(dy, "echo started-slow && sleep 120"), "slow")
    first = _by_commit(dy, slow)
    _until(dy, first["id"], {"running"})
    follow = subprocess.Popen([str(Path(sys.executable).parent / "dockyard"), "build", "logs",
                               first["id"], "--follow"], stdout=subprocess.PIPE, text=True,
                              env=dy.env())
    try:
        assert follow.stdout is not None
        deadline = time.monotonic() + 60
        seen = ""
        while "started-slow" not in seen:  # streamed while the build still runs
            assert time.monotonic() < deadline, seen
            seen += follow.stdout.readline()
        assert _state(dy, first["id"])["state"] == "running"
        older = git_server.push(_dockerfile(dy, "echo older"), "older")
        newer = git_server.push(_dockerfile(dy, "echo newer"), "newer")
        assert _state(dy, first["id"])["state"] == "running"  # both waited behind it
        cancelled = dy.ok("build", "cancel", first["id"], "--json").json()
        assert cancelled["state"] in ("running", "cancelled")
        assert _until(dy, first["id"], {"cancelled", "failed"})["state"] == "cancelled"
        rest, _ = follow.communicate(timeout=30)  # the follow ends with the build
        assert follow.returncode == 0 and "cancelled" in rest
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    skipped = _until(dy, _by_commit(dy, older)["id"], {"cancelled", "succeeded", "failed"})
    built = _finished(dy, newer)
    assert skipped["state"] == "cancelled" and skipped["error"] == \
        f"superseded by build {built['id']}"
    assert built["state"] == "succeeded" and _digest(dy, "main") == built["digest"]
    assert slow[:12] not in _tags(dy) and older[:12] not in _tags(dy)
    assert _build_containers("started-slow") == []


def test_a_build_over_its_time_limit_is_killed(dy: Dockyard, git_server: GitServer,
                                               repo: Repo) -> None:
    (git_server.work / "Dockerfile.slow").write_text(
        f"FROM {dy.registry}/{IMAGE}\nRUN echo over-the-limit && sleep 120\n")
    git_server.push(_dockerfile(dy, "echo fine"), "with a slow Dockerfile")
    dy.ok("repo", "add", "slow", "--url", git_server.url, "--dockerfile", "Dockerfile.slow",
          "--timeout", "3")
    try:
        build = dy.ok("build", "start", "slow", "--json").json()
        done = _until(dy, build["id"], {"succeeded", "failed", "cancelled"})
        assert done["state"] == "failed" and "time limit of 3s" in done["error"], done
        assert "over-the-limit" in dy.ok("build", "logs", build["id"]).out
        assert _build_containers("over-the-limit") == []
    finally:
        dy.cli("repo", "rm", "slow")


def test_a_build_rolls_out_to_its_deploy_service(dy: Dockyard, git_server: GitServer,
                                                 repo: Repo, tmp_path: Path) -> None:
    """`--deploy STACK/SERVICE`: the new image goes out through the stack deploy path (a new
    stack version); the rollout's result is recorded on the build."""
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  app:\n    image: {IMAGE}\n")
    dy.ok("stack", "deploy", "deliv", "-f", str(compose))
    commit = git_server.push(_dockerfile(dy, "echo shipped"), "to ship")
    dy.ok("repo", "add", "shipped", "--url", git_server.url, "--deploy", "deliv/app")
    try:
        build = dy.ok("build", "start", "shipped", "--wait", "--json").json()
        assert build["state"] == "succeeded" and build["commit"] == commit, build
        assert build["rollout"].startswith("deliv/app: version 2"), build["rollout"]
        assert f"deploying {build['image']} to deliv/app" in \
            dy.ok("build", "logs", build["id"]).out
        stack = dy.ok("stack", "show", "deliv", "--json").json()
        assert [s["image"] for s in stack["services"]] == [build["image"]]
        deadline = time.monotonic() + 60
        while dy.db_query("SELECT image, state FROM instances WHERE name = 'deliv-app-1'") \
                != [(build["image"], "running")]:
            assert time.monotonic() < deadline, dy.db_query(
                "SELECT name, image, state FROM instances WHERE name LIKE 'deliv-%'")
            time.sleep(0.3)
    finally:
        dy.cli("repo", "rm", "shipped")
        dy.cli("stack", "rm", "deliv")
        deadline = time.monotonic() + 60
        while dy.db_query("SELECT name FROM instances WHERE name LIKE 'deliv-%'"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
