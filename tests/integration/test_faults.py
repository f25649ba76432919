"""kill -9 anywhere: for every named fault point, the agent (or the server) dies right there;
after a restart the operation finishes or rolls back, and nothing leaks. The last test proves
that every point in `dockyard.faults.POINTS` was hit."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dockyard import faults
from dockyard.errors import DockyardError
from tests.integration.dockyard_env import IMAGE, leaks
from tests.integration.split_env import SplitDockyard, make_split


@pytest.fixture(scope="module")
def split() -> Iterator[SplitDockyard]:
    env = make_split()
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def ping(ip: str) -> bool:
    return subprocess.run(["ping", "-c1", "-W1", ip], capture_output=True).returncode == 0


def until(check: Callable[[], bool], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except DockyardError:
            pass
        time.sleep(0.1)
    raise AssertionError("not converged in time")


def api_call(env: SplitDockyard, method: str, path: str, **params: Any) -> Any:
    with env.api() as api:
        try:
            return api.request(method, path, params=params or None)
        except DockyardError:
            return None  # the server may die while answering


def show(env: SplitDockyard, name: str) -> dict[str, Any] | None:
    with env.api() as api:
        try:
            return dict(api.get(f"/v1/instances/{name}"))
        except DockyardError as exc:
            if exc.status == 404:
                return None
            raise


def launch(env: SplitDockyard, name: str) -> None:
    with env.api() as api, contextlib.suppress(DockyardError):
        api.post("/v1/instances", {"name": name, "image": IMAGE})  # the server may die here


def died(proc: Any, timeout: float = 30.0) -> None:
    proc.wait(timeout=timeout)
    assert proc.returncode == -9, proc.returncode


# What to do for each point: (process armed, action that reaches the point, expected end state)
AGENT_CREATE = {"agent.create.files_written", "agent.create.container_created",
                "agent.create.started", "agent.create.plumbed", "agent.report.before"}


def scenario(point: str) -> tuple[str, str, str]:
    if point in AGENT_CREATE or point == "server.create.committed" \
            or point == "server.report.before_apply":
        return ("server" if point.startswith("server") else "agent", "create", "running")
    if point.endswith(("delete.unplumbed", "delete.container_removed", "delete.committed")):
        return ("server" if point.startswith("server") else "agent", "delete", "gone")
    if point.startswith("agent.stop") or point == "server.action.committed":
        return ("server" if point.startswith("server") else "agent", "stop", "stopped")
    if point == "agent.start.started":
        return ("agent", "start", "running")
    raise AssertionError(f"no scenario for fault point {point}")


def arm(env: SplitDockyard, who: str, point: str) -> None:
    if who == "agent":
        env.stop_agent()
        env.start_agent(fault=point)
    else:
        env.stop_server()
        env.start_server(fault=point)
        env.proc = env.server


def recover(env: SplitDockyard, who: str) -> None:
    proc = env.agent if who == "agent" else env.server
    died(proc)
    if who == "agent":
        env.start_agent()
    else:
        env.start_server()
        env.proc = env.server


# A migration needs two hosts: its points are driven on dev-clusters, cold (server.migrate.*)
# by tests/e2e/test_migrate_faults.py and live (server.live.*) by
# tests/e2e/live/test_live_migrate.py, each checking that all of its points were hit there.
LOCAL_POINTS = sorted(p for p in faults.POINTS
                      if not p.startswith(("server.migrate.", "server.live.")))


@pytest.mark.parametrize("point", LOCAL_POINTS)
def test_kill_at_fault_point(split: SplitDockyard, point: str) -> None:
    who, action, end = scenario(point)
    name = "f-" + point.replace(".", "-").replace("_", "-")[:50]
    try:
        if action != "create":
            split.ok("launch", IMAGE, name)
        if action == "start":
            split.ok("stop", name)
        arm(split, who, point)
        if action == "create":
            launch(split, name)
        elif action == "delete":
            api_call(split, "DELETE", f"/v1/instances/{name}", force="true")
        else:
            api_call(split, "POST", f"/v1/instances/{name}/actions/{action}")
        recover(split, who)
        if end == "gone":
            until(lambda: show(split, name) is None)
        else:
            until(lambda: (show(split, name) or {}).get("state") == end)
            inst = show(split, name)
            assert inst is not None
            assert ping(inst["ip"]) == (end == "running")
            running = [c for c in split.containers()
                       if c.labels["dockyard.instance"] == inst["id"]]
            assert len(running) == 1
        with split.api() as api:
            assert not [o for o in api.get("/v1/events", limit=1000)["items"]
                        if o["kind"] == "create_failed" and o["instance_name"] == name]
        assert point in split.marker.read_text().split()
    finally:
        if split.server is None or split.server.poll() is not None:
            split.start_server()
            split.proc = split.server
        if split.agent is None or split.agent.poll() is not None:
            split.start_agent()
        split.cli("delete", name, "--force")
        until(lambda: show(split, name) is None)
        until(lambda: leaks(split) == [], timeout=10)


def test_every_fault_point_was_hit(split: SplitDockyard) -> None:
    hit = set(split.marker.read_text().split()) if split.marker.exists() else set()
    assert hit == set(LOCAL_POINTS), f"never hit: {sorted(set(LOCAL_POINTS) - hit)}"
