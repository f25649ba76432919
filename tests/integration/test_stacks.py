"""App stacks end to end (issue #12, first slice): `dockyard stack deploy` of a compose file
makes ordinary instances STACK-SERVICE-N on the real dockerd; ls / ps / show; each replica's
/etc/hosts names its stack's replicas by service (busybox resolves them); an identical
re-deploy changes nothing; the server's loop repairs a replica deleted by hand; scale up and
down; rm leaves
nothing; bad input is a 4xx with nothing left behind, a deploy failing half-way removes what
it created."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidRequest, NotFound
from tests.integration.dockyard_env import IMAGE, Dockyard

COMPOSE = f"""
services:
  web:
    image: {IMAGE}
    environment:
      GREETING: ${{GREETING:-hello}}
    deploy:
      replicas: 2
      resources: {{limits: {{memory: 64M}}}}
  db:
    image: {IMAGE}
"""


def _instances(dy: Dockyard, prefix: str) -> list[str]:
    return sorted(name for (name,) in dy.db_query(
        "SELECT name FROM instances WHERE name LIKE ?", f"{prefix}-%"))


def _stack_rows(dy: Dockyard, name: str) -> list[int]:
    """The rows of the stack NAME in each stack table (other modules' stacks may exist on the
    shared Dockyard)."""
    for table in ("stack_versions", "stack_services", "stack_replicas"):  # none orphaned
        orphans = f"SELECT count(*) FROM {table} WHERE stack_id NOT IN (SELECT id FROM stacks)"
        assert dy.db_query(orphans)[0][0] == 0, table  # noqa: S608
    of_stack = f"stack_id IN (SELECT id FROM stacks WHERE name = '{name}')"
    return [dy.db_query(f"SELECT count(*) FROM stacks WHERE name = '{name}'")[0][0]] + [
        dy.db_query(f"SELECT count(*) FROM {table} WHERE {of_stack}")[0][0]  # noqa: S608
        for table in ("stack_versions", "stack_services", "stack_replicas")]


def _wait_instances(dy: Dockyard, prefix: str, expected: list[str],
                    timeout: float = 60) -> None:
    """Until the instances named PREFIX-… are `expected` (deleted ones go once their agent
    removed them)."""
    deadline = time.monotonic() + timeout
    while _instances(dy, prefix) != expected:
        assert time.monotonic() < deadline, f"{_instances(dy, prefix)} != {expected}"
        time.sleep(0.2)


@pytest.fixture
def compose(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE)
    return path


@pytest.fixture
def cleanup(dy: Dockyard) -> Iterator[list[str]]:
    """Stacks a test deploys; removed (and their instances waited for) even on failure."""
    names: list[str] = []
    yield names
    for name in names:
        dy.cli("stack", "rm", name)
        _wait_instances(dy, name, [])


def _hosts_lines(dy: Dockyard, instance: str, service: str, count: int) -> list[str]:
    """The lines of `instance`'s /etc/hosts naming `service`, once there are `count` (the
    agent rewrites the file when the network's peers change)."""
    deadline = time.monotonic() + 30
    with dy.api() as api:
        while True:
            hosts = api.post(f"/v1/instances/{instance}/exec",
                             {"command": ["cat", "/etc/hosts"]})["stdout"]
            lines = [line for line in hosts.splitlines() if service in line.split()[1:]]
            if len(lines) == count or time.monotonic() > deadline:
                return lines
            time.sleep(0.2)


def _ps(dy: Dockyard, name: str) -> list[dict[str, Any]]:
    return list(dy.ok("stack", "ps", name, "--json").json()["items"])


def test_deploy_ps_redeploy_scale_rm(dy: Dockyard, compose: Path,
                                     cleanup: list[str]) -> None:
    cleanup.append("shop")
    out = dy.ok("stack", "deploy", "shop", "-f", str(compose)).out
    assert "created shop-db-1" in out and "3 replicas running" in out
    reps = _ps(dy, "shop")
    assert [(r["name"], r["service"], r["state"]) for r in reps] == [
        ("shop-db-1", "db", "running"), ("shop-web-1", "web", "running"),
        ("shop-web-2", "web", "running")]
    with dy.api() as api:
        web1 = api.get("/v1/instances/shop-web-1")
        assert web1["limits"]["memory_bytes"] == 64 * 1024 * 1024
        assert {r["ip"] for r in reps} == {api.get(f"/v1/instances/{r['name']}")["ip"]
                                           for r in reps}
        env = api.post("/v1/instances/shop-web-2/exec", {"command": ["sh", "-c",
                                                                     "echo $GREETING"]})
        assert env["stdout"].strip() == "hello"
        deadline = time.monotonic() + 30  # the server's loop sees every replica running
        while api.get("/v1/stacks/shop")["status"] != "converged":
            assert time.monotonic() < deadline, api.get("/v1/stacks/shop")["status"]
            time.sleep(0.2)
        listed = api.get("/v1/stacks")
        assert [s["name"] for s in listed["items"]] == ["shop"]
        assert dy.ok("stack", "ls", "--json").json() == listed
    assert dy.ok("stack", "show", "shop", "--json").json()["version"] == 1
    ips = {r["name"]: r["ip"] for r in reps}
    assert sorted(_hosts_lines(dy, "shop-db-1", "web", 2)) == sorted(
        [f"{ips['shop-web-1']}\tshop-web-1 web", f"{ips['shop-web-2']}\tshop-web-2 web"])
    assert _hosts_lines(dy, "shop-web-2", "db", 1) == [f"{ips['shop-db-1']}\tshop-db-1 db"]
    with dy.api() as api:  # busybox resolves the service name through /etc/hosts
        pinged = api.post("/v1/instances/shop-web-1/exec",
                          {"command": ["ping", "-c1", "-W2", "db"]})
        assert f"PING db ({ips['shop-db-1']})" in pinged["stdout"], pinged

    again = dy.ok("stack", "deploy", "shop", "-f", str(compose)).out
    assert "unchanged (version 1)" in again
    assert [(r["name"], r["instance"]) for r in _ps(dy, "shop")] == \
        [(r["name"], r["instance"]) for r in reps]

    gone = next(r["instance"] for r in reps if r["name"] == "shop-web-2")
    dy.ok("delete", "--force", "shop-web-2")  # behind the stack's back: the server's loop
    deadline = time.monotonic() + 60          # makes a new one, no deploy needed
    while not any(r["name"] == "shop-web-2" and r["instance"] not in (None, gone)
                  and r["state"] == "running" for r in _ps(dy, "shop")):
        assert time.monotonic() < deadline, _ps(dy, "shop")
        time.sleep(0.2)
    assert "unchanged (version 1)" in dy.ok("stack", "deploy", "shop", "-f", str(compose)).out
    assert dy.ok("stack", "show", "shop", "--json").json()["version"] == 1

    scaled = dy.ok("stack", "scale", "shop", "web=3", "--json").json()
    assert scaled["version"] == 2 and scaled["actions"] == ["created shop-web-3"]
    assert [r["state"] for r in scaled["replicas"]] == ["running"] * 4
    assert len(_hosts_lines(dy, "shop-db-1", "web", 3)) == 3
    down = dy.ok("stack", "scale", "shop", "web=1").out
    assert "deleted shop-web-3" in down and "deleted shop-web-2" in down
    assert [r["name"] for r in _ps(dy, "shop")] == ["shop-db-1", "shop-web-1"]
    _wait_instances(dy, "shop", ["shop-db-1", "shop-web-1"])

    dy.ok("stack", "rm", "shop")
    assert _instances(dy, "shop") == []
    assert _stack_rows(dy, "shop") == [0, 0, 0, 0]
    assert dy.cli("stack", "show", "shop").code != 0


def test_bad_input_leaves_nothing(dy: Dockyard, compose: Path, tmp_path: Path,
                                  cleanup: list[str]) -> None:
    cleanup.append("bad")
    unsupported = tmp_path / "command.yaml"
    unsupported.write_text(f"services:\n  web:\n    image: {IMAGE}\n    cap_add: [ALL]\n")
    result = dy.cli("stack", "deploy", "bad", "-f", str(unsupported))
    assert result.code != 0 and "services.web.cap_add: not supported" in result.err
    not_yet = tmp_path / "not-yet.yaml"
    not_yet.write_text(f"services:\n  web:\n    image: {IMAGE}\n    command: [sleep, '9']\n")
    result = dy.cli("stack", "deploy", "bad", "-f", str(not_yet))
    assert result.code != 0 and "services.web.command: not supported yet" in result.err
    with dy.api() as api:
        with pytest.raises(InvalidRequest) as bad:  # the server checks what it is sent
            api.post("/v1/stacks", {"name": "bad", "services": {"web": {
                "name": "web", "image": IMAGE, "depends_on": {"nope": "service_started"}}}})
        assert bad.value.status == 422 and "services.web.depends_on.nope" in bad.value.message
        with pytest.raises(NotFound) as image:
            api.post("/v1/stacks", {"name": "bad", "services": {
                "ok": {"name": "ok", "image": IMAGE},
                "web": {"name": "web", "image": "no-such-image-here:1"}}})
        assert image.value.status == 404 and "no-such-image-here" in image.value.message
        with pytest.raises(NotFound):
            api.post("/v1/stacks/bad/scale", {"replicas": {"web": 2}})
    assert _stack_rows(dy, "bad") == [0, 0, 0, 0] and _instances(dy, "bad") == []


def test_half_way_failure_rolls_back(dy: Dockyard, compose: Path,
                                     cleanup: list[str]) -> None:
    """shop2-web-2 exists already (not the stack's): the deploy creates db-1 and web-1, then
    fails on web-2 with a 409, and removes what it created."""
    cleanup.append("shop2")
    dy.ok("launch", IMAGE, "shop2-web-2")
    try:
        result = dy.cli("stack", "deploy", "shop2", "-f", str(compose))
        assert result.code != 0 and "shop2-web-2" in result.err and "exists" in result.err
        assert _stack_rows(dy, "shop2") == [0, 0, 0, 0]
        _wait_instances(dy, "shop2", ["shop2-web-2"])
        with dy.api() as api, pytest.raises(NotFound):
            api.get("/v1/stacks/shop2")
    finally:
        dy.ok("delete", "--force", "shop2-web-2")


def test_quota_refuses_before_anything_starts(dy: Dockyard, compose: Path,
                                              cleanup: list[str]) -> None:
    cleanup.append("quota")
    try:
        with dy.api() as api:
            before = len(api.list_all("/v1/instances"))
        dy.ok("quota", "set", "default", "--instances", str(before + 2))
        result = dy.cli("stack", "deploy", "quota", "-f", str(compose))
        assert result.code != 0 and "quota" in result.err.lower()
        assert _stack_rows(dy, "quota") == [0, 0, 0, 0] and _instances(dy, "quota") == []
    finally:
        dy.ok("quota", "set", "default", "--instances", "none")


def test_override_file_and_env_file(dy: Dockyard, compose: Path, tmp_path: Path,
                                    cleanup: list[str]) -> None:
    """-f twice merges in order (the override wins), --env-file feeds ${GREETING}; a YAML
    error names its file, line and column."""
    cleanup.append("ovr")
    override = tmp_path / "override.yaml"
    override.write_text("services:\n  web:\n    deploy: {replicas: 1}\n  db:\n"
                        "    deploy: {replicas: 0}\n")
    env = tmp_path / "prod.env"
    env.write_text("GREETING=from-env-file\n")
    result = dy.ok("stack", "deploy", "ovr", "-f", str(compose), "-f", str(override),
                   "--env-file", str(env), "--json").json()
    assert [(r["name"], r["state"]) for r in result["replicas"]] == [("ovr-web-1", "running")]
    with dy.api() as api:
        said = api.post("/v1/instances/ovr-web-1/exec", {"command": ["sh", "-c",
                                                                     "echo $GREETING"]})
    assert said["stdout"].strip() == "from-env-file"
    broken = tmp_path / "broken.yaml"
    broken.write_text("services:\n  web:\n    image: [unclosed\n")
    refused = dy.cli("stack", "deploy", "ovr", "-f", str(broken))
    assert refused.code != 0 and "invalid YAML at line" in refused.err
    assert [r["name"] for r in _ps(dy, "ovr")] == ["ovr-web-1"]
