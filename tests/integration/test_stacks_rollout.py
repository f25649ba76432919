"""App stacks, health and rollouts, on the real dockerd (issue #12): a compose healthcheck runs
as dockerd's HEALTHCHECK and its state shows in `stack ps`, `show`, the instance, events and
`dockyard_instance_healthy`; a changed environment rolls out v1 → v2 replica by replica; a
v3 whose healthcheck fails is rolled back automatically (nothing of v3 left); `stack
rollback` goes back one more version; a bad image is refused before anything stops; an
unhealthy replica is restarted, then replaced; the server's background loop repairs a replica
deleted behind the stack's back without any deploy.

One stack (`roll`) carries the story through the module, in order; the healthcheck runs
every second so each step takes a few seconds."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dockyard.errors import NotFound
from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.polling import until

# healthy unless VERSION is v3 or /tmp/sick exists in the container; the compose `entrypoint`
# and `command` replace the image's (only they write /tmp/started, which health requires)
COMPOSE = f"""
services:
  web:
    image: {IMAGE}
    entrypoint: [/bin/sh, -c]
    command: ["touch /tmp/started; trap 'exit 0' TERM; while :; do sleep 1 & wait $$!; done"]
    environment:
      VERSION: ${{VERSION}}
    healthcheck:
      test: 'test -f /tmp/started && test "$$VERSION" != v3 && test ! -f /tmp/sick'
      interval: 1s
      timeout: 2s
      retries: 3
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, failure_action: rollback, order: stop-first}}
"""


@pytest.fixture(scope="module")
def roll(dy: Dockyard, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("roll") / "compose.yaml"
    path.write_text(COMPOSE)
    yield path
    dy.cli("stack", "rm", "roll")
    until(lambda: not dy.db_query("SELECT 1 FROM instances WHERE name LIKE 'roll-%'"),
           "roll's instances are not gone")


def _deploy(dy: Dockyard, path: Path, version: str, *extra: str) -> Any:
    env = path.parent / f"{version}.env"
    env.write_text(f"VERSION={version}\n")
    return dy.cli("stack", "deploy", "roll", "-f", str(path), "--env-file", str(env),
                  *extra, timeout=180)


def _replicas(dy: Dockyard) -> list[dict[str, Any]]:
    return list(dy.ok("stack", "ps", "roll", "--json").json()["items"])


def _versions_running(dy: Dockyard) -> list[str]:
    """What each live replica's container says $VERSION is."""
    said = []
    with dy.api() as api:
        for rep in _replicas(dy):
            if rep["state"] is None:
                continue
            out = api.post(f"/v1/instances/{rep['name']}/exec",
                           {"command": ["sh", "-c", "echo $VERSION"]})
            said.append(out["stdout"].strip())
    return said


def _all_healthy(dy: Dockyard) -> list[dict[str, Any]] | None:
    reps = _replicas(dy)
    return reps if len(reps) == 2 and all(r["health"] == "healthy" for r in reps) else None


def _events(dy: Dockyard, kind: str) -> list[str]:
    with dy.api() as api:
        return [e["message"] for e in api.list_all("/v1/events", limit=1000)
                if e["kind"] == kind]


def test_healthcheck_shows_healthy(dy: Dockyard, roll: Path) -> None:
    result = _deploy(dy, roll, "v1")
    assert result.code == 0, result.err
    reps = until(lambda: _all_healthy(dy), "v1 replicas never became healthy")
    assert [r["name"] for r in reps] == ["roll-web-1", "roll-web-2"]
    assert "healthy" in dy.ok("stack", "ps", "roll").out
    assert "healthy" in dy.ok("show", "roll-web-1").out
    with dy.api() as api:
        inst = api.get("/v1/instances/roll-web-1")
        assert inst["health"] == "healthy"
        container = dy.db_query("SELECT container_id FROM instances WHERE name = ?",
                                "roll-web-1")[0][0]
    engine = docker.from_env()  # the container's own HEALTHCHECK, as dockerd runs it
    try:
        config = engine.api.inspect_container(container)["Config"]
    finally:
        engine.close()
    check = config["Healthcheck"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["Cmd"][0].startswith("touch ")
    assert check["Test"][0] == "CMD-SHELL" and check["Interval"] == 1_000_000_000
    assert check["Retries"] == 3 and check["Timeout"] == 2_000_000_000
    metrics = httpx.get(f"{dy.url}/metrics", headers={"Authorization": f"Bearer {dy.token()}"},
                        verify=dy.verify)
    assert metrics.status_code == 200, metrics.text
    healthy = {s.labels["instance"]: s.value
               for f in text_string_to_metric_families(metrics.text)
               if f.name == "dockyard_instance_healthy" for s in f.samples}
    assert healthy["roll-web-1"] == 1.0 and healthy["roll-web-2"] == 1.0
    assert any(m.endswith("-> healthy") for m in _events(dy, "health"))


def test_update_v1_to_v2_replaces_every_replica(dy: Dockyard, roll: Path) -> None:
    before = {r["name"]: r["instance"] for r in _replicas(dy)}
    result = _deploy(dy, roll, "v2")
    assert result.code == 0, result.err
    show = dy.ok("stack", "show", "roll", "--json").json()
    assert show["status"] == "converged" and show["version"] == 2
    reps = until(lambda: _all_healthy(dy), "v2 replicas never became healthy")
    assert all(r["instance"] != before[r["name"]] for r in reps)  # every one replaced
    assert {r["version"] for r in reps} == {2}
    assert _versions_running(dy) == ["v2", "v2"]
    progress = _events(dy, "stack_update")
    assert any("web: update 1 to version 2" in m for m in progress)
    assert any("web: update 2 to version 2" in m for m in progress)
    assert any("version 2 rolled out" in m for m in progress)


def test_failing_v3_is_rolled_back(dy: Dockyard, roll: Path) -> None:
    result = _deploy(dy, roll, "v3")
    assert result.code == 0, result.err
    show = dy.ok("stack", "show", "roll", "--json").json()
    assert show["status"] == "converged", show["status_reason"]
    assert show["version"] == 4 and show["spec"]["services"]["web"]["environment"] == {
        "VERSION": "v2"}
    until(lambda: _all_healthy(dy), "the rolled-back replicas never became healthy")
    assert _versions_running(dy) == ["v2", "v2"]  # nothing of v3 left
    history = dy.ok("stack", "history", "roll", "--json").json()["items"]
    assert [v["note"].split(":")[0] for v in history] == [
        "deploy", "deploy", "failed", "rollback to 2"]
    assert history[-1]["current"]
    assert any("version 3 failed" in m for m in _events(dy, "stack_rollback"))


def test_stack_rollback_goes_back_one_version(dy: Dockyard, roll: Path) -> None:
    out = dy.ok("stack", "rollback", "roll", "--json").json()
    assert out["version"] == 5 and out["spec"]["services"]["web"]["environment"] == {
        "VERSION": "v1"}
    until(lambda: _all_healthy(dy), "v1 replicas never became healthy again")
    assert _versions_running(dy) == ["v1", "v1"]
    history = dy.ok("stack", "history", "roll").out
    assert "rollback to 1" in history


def test_bad_image_refused_before_anything_stops(dy: Dockyard, roll: Path) -> None:
    before = [(r["name"], r["instance"], r["state"]) for r in _replicas(dy)]
    bad = roll.parent / "bad.yaml"
    bad.write_text(COMPOSE.replace(f"image: {IMAGE}", "image: dockyard/no-such-image:9"))
    env = roll.parent / "v1.env"
    result = dy.cli("stack", "deploy", "roll", "-f", str(bad), "--env-file", str(env))
    assert result.code != 0 and "no-such-image" in result.err
    with dy.api() as api, pytest.raises(NotFound):
        api.post("/v1/stacks/nothing-here/rollback", {})
    assert [(r["name"], r["instance"], r["state"]) for r in _replicas(dy)] == before
    assert dy.ok("stack", "show", "roll", "--json").json()["version"] == 5


def test_unhealthy_replica_restarted_then_replaced(dy: Dockyard, roll: Path) -> None:
    """/tmp/sick survives a restart (the container's own layer): restarted first, then
    replaced by a new instance, which is healthy — no deploy involved (the loop)."""
    first = {r["name"]: r["instance"] for r in _replicas(dy)}
    with dy.api() as api:
        api.post("/v1/instances/roll-web-1/exec", {"command": ["touch", "/tmp/sick"]})
    until(lambda: any("restarted roll-web-1" in m for m in _events(dy, "stack_repair")),
           "roll-web-1 was never restarted", timeout=90)
    reps = until(lambda: (r := _all_healthy(dy)) and r[0]["instance"] != first["roll-web-1"]
                  and r, "roll-web-1 was never replaced", timeout=90)
    assert reps[1]["instance"] == first["roll-web-2"]
    repairs = _events(dy, "stack_repair")
    assert any("restarted roll-web-1" in m for m in repairs)
    assert any("replaced roll-web-1" in m for m in repairs)


def test_loop_repairs_a_replica_deleted_behind_its_back(dy: Dockyard, roll: Path) -> None:
    gone = next(r for r in _replicas(dy) if r["name"] == "roll-web-2")["instance"]
    dy.ok("delete", "--force", "roll-web-2")
    reps = until(lambda: (r := _all_healthy(dy)) and r[1]["instance"] != gone and r,
                  "roll-web-2 was not recreated by the loop")
    assert dy.ok("stack", "show", "roll", "--json").json()["version"] == 5
    assert reps[1]["version"] == reps[0]["version"] and _versions_running(dy) == ["v1", "v1"]


def test_update_pulls_the_new_image_before_its_batch(dy: Dockyard,
                                                     tmp_path: Path) -> None:
    """Images only the registry holds: the first deploy's replica is pulled by its agent as
    it is created (an instance `pull` event); the update to :2 pulls the image onto the host
    before its batch stops anything (a stack event), so the new replica's create has nothing
    left to pull (no `pull` event of its own)."""
    engine = docker.from_env()
    tags = [f"dytest/prepull:{n}" for n in (1, 2)]
    compose = tmp_path / "compose.yaml"
    try:
        for n, tag in enumerate(tags, 1):
            engine.images.build(fileobj=io.BytesIO(
                f'FROM {IMAGE}\nRUN ["/bin/sh", "-c", "echo {n} > /version"]\n'.encode()),
                tag=tag, rm=True)
            dy.ok("image", "push", tag)
            engine.images.remove(tag)  # only the registry has it now
        seen = [("", ["pull"])]  # (instance, its pull events): v1 pulled by its agent
        for tag in tags:
            compose.write_text(f"services:\n  web:\n    image: {tag}\n")
            result = dy.cli("stack", "deploy", "pull", "-f", str(compose), timeout=180)
            assert result.code == 0, result.err
            now = until(lambda: (r := _pull_events(dy)) and r[0] != seen[-1][0] and r,
                         f"pull-web-1 never ran {tag}", timeout=90)
            assert now[1] == seen[-1][1], now
            seen.append((now[0], []))  # v2: nothing left to pull at its create
        updates = _events(dy, "stack_update")
        pulled = [m for m in updates if f"web: pulled {dy.registry}/{tags[1]} on " in m]
        assert len(pulled) == 1 and pulled[0].endswith("before update 1 to version 2"), updates
        assert engine.images.get(f"{dy.registry}/{tags[1]}")
    finally:
        dy.cli("stack", "rm", "pull")
        until(lambda: not dy.db_query("SELECT 1 FROM instances WHERE name LIKE 'pull-%'"),
               "pull's instances are not gone")
        for tag in tags:
            for name in (tag, f"{dy.registry}/{tag}"):
                with contextlib.suppress(docker.errors.ImageNotFound):
                    engine.images.remove(name)
        engine.close()


def _pull_events(dy: Dockyard) -> tuple[str, list[str]] | None:
    """(instance id, its `pull` events) of pull-web-1 once it runs."""
    with dy.api() as api:
        try:
            inst = api.get("/v1/instances/pull-web-1")
        except NotFound:
            return None
        if inst["state"] != "running":
            return None
        events = api.get("/v1/instances/pull-web-1/events")["items"]
    return inst["id"], [e["kind"] for e in events if e["kind"] == "pull"]
