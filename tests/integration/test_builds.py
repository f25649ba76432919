"""Builds from a real git server (issue #13): a bare repository served by `git daemon` on
loopback, whose `post-receive` hook sends a signed Gitea-format push webhook to Dockyard.

A push builds on the (only, unlabelled) host and pushes REGISTRY/default/NAME:<short sha> and
`:main` (checked through the registry's own API, digest included); a broken Dockerfile
fails with its step and log and pushes nothing (`:main` keeps the previous digest); a base
image not in the registry fails naming it; a forged signature is a 401 and queues nothing; a
replayed delivery is dropped. Each build's start and end are events; failed builds fire the
builtin build-failed alert, a successful one resolves it. Builds run under their memory/CPU
limits, at most two at once on a host (a third waits, queued); a kill -9 of the agent during
a build fails it, and nothing of it is left (step container, checkout, tags). Compose
`build:` with a git context and with a local directory (uploaded as a tar archive) deploy
the built image; a bad upload is a 4xx that leaves nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
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

from dockyard.adapters.build_context import pack
from dockyard.adapters.processes import command_lines
from dockyard.errors import DockyardError, InvalidRequest, PayloadTooLarge
from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.gitserver import GitServer, install_hook, serve_git


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with serve_git(tmp_path_factory.mktemp("gitsrv")) as server:
        yield server


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
    sent = install_hook(git_server, dy, added["id"], added["webhook_secret"])
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
    assert _build_events(dy, build["id"]) == [
        ("build_started", "started on host local"),
        ("build_succeeded", f"succeeded at {commit[:12]}: {build['image']}")]


def _build_events(dy: Dockyard, build_id: str) -> list[tuple[str, str]]:
    """The events of one build (kind, message after its "build ID of REPO (REF): ")."""
    found, after = [], 0
    with dy.api() as api:
        while True:
            page = api.get("/v1/events", after=after, limit=1000)
            for event in page["items"]:
                head = f"build {build_id} of "
                if event["message"].startswith(head):
                    found.append((event["kind"], event["message"].split("): ", 1)[1]))
            if not page["items"]:
                return found
            after = page["items"][-1]["id"]


def _build_alert(dy: Dockyard, state: str, value: float | None = None) -> dict[str, Any]:
    """The builtin build-failed alert on repository app in `state` (and with `value`: an
    evaluation before the last build may have opened it with an older count), polled: the
    alert loop runs every 10 s."""
    deadline = time.monotonic() + 40
    while True:
        with dy.api() as api:
            items = api.get("/v1/alerts", state="all", limit=1000)["items"]
        found = [a for a in items if a["kind"] == "build_failed"
                 and a["subject_name"] == "app" and a["state"] == state
                 and (value is None or a["value"] == value)]
        if found:
            return dict(found[-1])
        assert time.monotonic() < deadline, items
        time.sleep(0.5)


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
    kinds = [kind for kind, _ in _build_events(dy, build["id"])]
    assert kinds == ["build_started", "build_failed"]
    alert = _build_alert(dy, "firing", 2.0)  # two failed builds since the last success
    assert (alert["subject_kind"], alert["value"], alert["project"]) == ("repo", 2.0, "default")


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
    assert [k for k, _ in _build_events(dy, skipped["id"])] == ["build_cancelled"]
    assert [k for k, _ in _build_events(dy, first["id"])] == ["build_started",
                                                              "build_cancelled"]
    _build_alert(dy, "resolved")  # the newer build succeeded


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
        dy.ok("stack", "rm", "deliv")
        deadline = time.monotonic() + 60
        while dy.db_query("SELECT name FROM instances WHERE name LIKE 'deliv-%'"):
            assert time.monotonic() < deadline
            time.sleep(0.2)


def _inspect(marker: str) -> dict[str, Any]:
    """HostConfig of the running build step whose command holds `marker`."""
    client = docker.from_env()
    try:
        found = [c for c in client.containers.list()
                 if marker in " ".join(c.attrs["Config"].get("Cmd") or [])]
        return dict(found[0].attrs["HostConfig"]) if found else {}
    finally:
        client.close()


def _running_step(marker: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while not (config := _inspect(marker)):
        assert time.monotonic() < deadline, f"no running build step {marker}"
        time.sleep(0.2)
    return config


def test_builds_run_under_limits_at_most_two_on_a_host(dy: Dockyard, git_server: GitServer,
                                                       repo: Repo) -> None:
    """A repository's memory/CPU limits (default: the server's, 2G and 2 CPUs) are each step
    container's; of three builds of three repositories two run on the one host, the third
    waits queued (no host, no step) until one of them ends; over the server's bound: 409."""
    names = ("hold-a", "hold-b", "hold-c")
    for name in names:
        (git_server.work / f"Dockerfile.{name}").write_text(
            f"FROM {dy.registry}/{IMAGE}\nRUN echo {name}-step && sleep 120\n")
    git_server.push(_dockerfile(dy, "echo fine"), "three slow Dockerfiles")
    over = dy.cli("repo", "add", "hold-x", "--url", git_server.url, "--memory", "3G")
    assert over.code != 0 and "at most the server's build limit" in over.err, over
    dy.ok("repo", "add", "hold-a", "--url", git_server.url, "--dockerfile", "Dockerfile.hold-a",
          "--memory", "64M", "--cpus", "0.5")
    for name in names[1:]:
        dy.ok("repo", "add", name, "--url", git_server.url, "--dockerfile",
              f"Dockerfile.{name}")
    builds: dict[str, str] = {}
    try:
        for name in names:
            builds[name] = dy.ok("build", "start", name, "--json").json()["id"]
            if name != "hold-c":  # a and b take the host's two build slots, in this order
                _running_step(f"{name}-step")
        limited, default = _inspect("hold-a-step"), _inspect("hold-b-step")
        assert (limited["Memory"], limited["MemorySwap"]) == (64 << 20, 64 << 20)
        assert (limited["CpuQuota"], limited["CpuPeriod"]) == (50000, 100000)
        assert (default["Memory"], default["CpuQuota"]) == (2 << 30, 200000)
        assert "build limits: memory 67108864 bytes, 0.5 CPUs" in \
            dy.ok("build", "logs", builds["hold-a"]).out
        waiting = _state(dy, builds["hold-c"])
        assert (waiting["state"], waiting["host"]) == ("queued", None)
        assert _inspect("hold-c-step") == {}
        dy.ok("build", "cancel", builds["hold-a"])
        _until(dy, builds["hold-a"], {"cancelled"})
        _running_step("hold-c-step")  # a slot is free: the waiting build runs
        assert _state(dy, builds["hold-c"])["host"] == "local"
    finally:
        for name in names:
            dy.cli("build", "cancel", builds.get(name, "none"))
        for build_id in builds.values():
            _until(dy, build_id, {"cancelled", "failed", "succeeded"})
        for name in names:
            dy.cli("repo", "rm", name)
    assert [c for name in names for c in _build_containers(f"{name}-step")] == []


def _agent_pid(dy: Dockyard) -> int | None:
    """PID of the agent process of this test's `dockyard up` (its --home is ours)."""
    home = str(dy.home / "agent")
    return next((pid for pid, argv in command_lines()
                 if "agent" in argv and home in argv and "--server" in argv), None)


def test_a_killed_agent_fails_its_build_and_leaves_nothing(dy: Dockyard,
                                                           git_server: GitServer,
                                                           repo: Repo) -> None:
    """kill -9 of the agent while a build step runs: the build is marked failed (not
    retried: a push or `build start` builds again), dockerd ends the step and removes its
    container, the restarted agent removes the checkout, nothing is pushed (no `:main`)."""
    (git_server.work / "Dockerfile.killed").write_text(
        f"FROM {dy.registry}/{IMAGE}\nRUN echo killed-agent-step && sleep 120\n")
    git_server.push(_dockerfile(dy, "echo fine"), "a Dockerfile to kill the agent in")
    dy.ok("repo", "add", "killed", "--url", git_server.url, "--dockerfile", "Dockerfile.killed")
    try:
        build = dy.ok("build", "start", "killed", "--json").json()
        _running_step("killed-agent-step")
        checkouts = list((dy.home / "agent" / "builds").glob(f"build-{build['id']}-*"))
        assert len(checkouts) == 1 and (checkouts[0] / "tag").is_file()
        pid = _agent_pid(dy)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        done = _until(dy, build["id"], {"failed", "succeeded", "cancelled"})
        assert done["state"] == "failed" and "interrupted" in done["error"], done
        deadline = time.monotonic() + 60  # dockerd ends the step of the closed connection
        while _build_containers("killed-agent-step"):
            assert time.monotonic() < deadline, _build_containers("killed-agent-step")
            time.sleep(0.3)
        deadline = time.monotonic() + 60  # `dockyard up` restarts the agent, which sweeps
        while (_agent_pid(dy) in (None, pid) or checkouts[0].exists()
               or dy.ok("host", "show", "local", "--json").json()["state"] != "up"):
            assert time.monotonic() < deadline, (_agent_pid(dy), checkouts)
            time.sleep(0.3)
        resp = _registry(dy, "default/killed/tags/list")
        assert resp.status_code == 404 or not resp.json().get("tags"), resp.text
        assert [k for k, _ in _build_events(dy, build["id"])] == ["build_started",
                                                                  "build_failed"]
    finally:
        dy.cli("repo", "rm", "killed")


def test_stack_deploy_builds_a_compose_build_service(dy: Dockyard, git_server: GitServer,
                                                     repo: Repo, tmp_path: Path) -> None:
    """`build: GIT_URL#main:sub` in a compose file: `stack deploy` adds repository
    STACK-SERVICE, builds it like a push (the Dockerfile under `sub`), and the service's
    replica runs the built image; a failing build deploys nothing."""
    (git_server.work / "sub").mkdir(exist_ok=True)
    (git_server.work / "sub" / "Dockerfile").write_text(
        f"FROM {dy.registry}/{IMAGE}\nRUN echo composed > /composed\n")
    commit = git_server.push(_dockerfile(dy, "echo fine"), "a Dockerfile under sub/")
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  web:\n    build: {git_server.url}#main:sub\n")
    try:
        out = dy.ok("stack", "deploy", "cb", "-f", str(compose))
        assert "building web" in out.err, out
        built = dy.ok("repo", "show", "cb-web", "--json").json()
        assert (built["context"], built["dockerfile"]) == ("sub", "sub/Dockerfile")
        image = f"{dy.registry}/default/cb-web:{commit[:12]}"
        _runs(dy, "cb", "web", image)
        with dy.api() as api:
            done = api.post("/v1/instances/cb-web-1/exec", {"command": ["cat", "/composed"]})
        assert done["exit_code"] == 0 and "composed" in done["stdout"], done

        (git_server.work / "sub" / "Dockerfile").write_text(
            f"FROM {dy.registry}/{IMAGE}\nRUN exit 5\n")
        git_server.push(_dockerfile(dy, "echo fine"), "a broken Dockerfile under sub/")
        failed = dy.cli("stack", "deploy", "cb", "-f", str(compose))
        assert failed.code != 0 and "services.web.build: build" in failed.err, failed
        assert [s["image"] for s in dy.ok("stack", "show", "cb", "--json").json()
                ["services"]] == [image]
    finally:
        _remove_stack(dy, "cb", "cb-web")


def _runs(dy: Dockyard, stack: str, service: str, image: str) -> None:
    """The stack's service is on `image`, and its replica runs it."""
    assert [s["image"] for s in dy.ok("stack", "show", stack, "--json").json()
            ["services"]] == [image]
    deadline = time.monotonic() + 60
    while dy.db_query("SELECT image, state FROM instances WHERE name = ?",
                      f"{stack}-{service}-1") != [(image, "running")]:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def _remove_stack(dy: Dockyard, stack: str, repo: str) -> None:
    dy.cli("stack", "rm", stack)
    dy.cli("repo", "rm", repo)
    deadline = time.monotonic() + 60
    while dy.db_query("SELECT name FROM instances WHERE name LIKE ?", f"{stack}-%"):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _counts(dy: Dockyard) -> tuple[int, int]:
    (builds,), = dy.db_query("SELECT count(*) FROM builds")
    (archives,), = dy.db_query("SELECT count(*) FROM build_archives")
    return int(builds), int(archives)


def test_stack_deploy_builds_a_local_directory(dy: Dockyard, repo: Repo,
                                               tmp_path: Path) -> None:
    """`build: ./web`: `stack deploy` packs the directory (its .dockerignore honoured) and
    uploads it; the build runs from that archive (no git) and pushes
    REGISTRY/default/lc-web:<sha256 of the archive[:12]>; the replica runs that image; the
    stored archive and the agent's copy are gone once the build ended."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "Dockerfile").write_text(f"FROM {dy.registry}/{IMAGE}\nCOPY . /ctx/\n")
    (web / "hello.txt").write_text("from a local directory\n")
    (web / "secret.key").write_text("not for the image\n")
    (web / ".dockerignore").write_text("*.key\n")
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    build: ./web\n")
    with pack(web, "Dockerfile") as archive:  # what the CLI uploads: the tag is its digest
        digest = hashlib.sha256(archive.read()).hexdigest()
    image = f"{dy.registry}/default/lc-web:{digest[:12]}"
    try:
        out = dy.ok("stack", "deploy", "lc", "-f", str(compose))
        assert "building web" in out.err and f"built {image}" in out.err, out
        assert dy.ok("repo", "show", "lc-web", "--json").json()["url"] is None
        build = dy.ok("build", "ls", "lc-web", "--json").json()["items"][0]
        assert (build["state"], build["ref"], build["commit"]) == (
            "succeeded", f"sha256:{digest}", None), build
        _runs(dy, "lc", "web", image)
        with dy.api() as api:
            done = api.post("/v1/instances/lc-web-1/exec",
                            {"command": ["sh", "-c", "cat /ctx/hello.txt; ls /ctx"]})
        assert done["exit_code"] == 0, done
        assert "from a local directory" in done["stdout"], done
        assert "secret.key" not in done["stdout"] and "Dockerfile" in done["stdout"], done
        assert _counts(dy)[1] == 0
        assert not list((dy.home / "agent" / "builds").glob(f"build-{build['id']}-*"))
    finally:
        _remove_stack(dy, "lc", "lc-web")


def test_bad_uploads_are_refused_and_leave_nothing(dy: Dockyard) -> None:
    """Garbage is a 422, a body over the server's 64 MiB a 413; neither leaves a build or an
    archive."""
    with dy.api() as api:
        api.post("/v1/repos", {"name": "upl", "url": None})
        try:
            before = _counts(dy)
            with pytest.raises(InvalidRequest, match="not a tar archive") as refused:
                api.upload("/v1/repos/upl/builds/upload", io.BytesIO(b"garbage" * 1000))
            assert refused.value.status == 422
            with pytest.raises(PayloadTooLarge, match="build context over"):
                api.upload("/v1/repos/upl/builds/upload", io.BytesIO(b"\0" * ((64 << 20) + 1)))
            assert _counts(dy) == before
        finally:
            with contextlib.suppress(DockyardError):
                api.delete("/v1/repos/upl")
