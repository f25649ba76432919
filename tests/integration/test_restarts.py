"""Restarts never disturb instances: agent (TERM and kill -9), server, dockerd (live-restore),
a simulated host reboot, and Ctrl-C of `dockyard up`."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.dockerd_env import PrivateDockerd
from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.split_env import SplitDockyard


def ping(ip: str, tries: int = 1) -> bool:
    for _ in range(tries):
        if subprocess.run(["ping", "-c1", "-W1", ip], capture_output=True).returncode == 0:
            return True
    return False


def state(env: SplitDockyard, name: str) -> tuple[int, str]:
    """(PID, StartedAt) of an instance's container."""
    inst = env.ok("show", name, "--json").json()
    client = env.docker_client()
    try:
        data = client.api.inspect_container(inst["container_id"])
    finally:
        client.close()
    return int(data["State"]["Pid"]), str(data["State"]["StartedAt"])


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def pair(split: SplitDockyard) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    a = split.ok("launch", IMAGE, "ra", "--json").json()
    b = split.ok("launch", IMAGE, "rb", "--json").json()
    split.ok("stop", "rb")
    try:
        yield a, b
    finally:
        split.cli("delete", "ra", "--force")
        split.cli("delete", "rb", "--force")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill9"])
def test_agent_restart_touches_no_container(split: SplitDockyard, pair: Any, sig: int) -> None:
    a, _ = pair
    before = state(split, "ra")
    split.stop_agent(sig)
    assert ping(a["ip"]) and state(split, "ra") == before
    split.start_agent()
    time.sleep(1.0)  # a full resync has run
    assert state(split, "ra") == before
    assert split.ok("show", "rb", "--json").json()["state"] == "stopped"
    assert ping(a["ip"])
    split.ok("restart", "ra")  # and the new agent drives it
    assert state(split, "ra") != before and ping(a["ip"], 3)


def test_server_restart(split: SplitDockyard, pair: Any) -> None:
    a, _ = pair
    before = state(split, "ra")
    split.restart_server()
    assert state(split, "ra") == before and ping(a["ip"])
    wait_for(lambda: split.cli("host", "show", "local", "--json").json()["state"] == "up")
    c = split.ok("launch", IMAGE, "rc", "--json").json()  # the agent's watch reconnected
    try:
        assert ping(c["ip"], 3)
    finally:
        split.ok("delete", "rc", "--force")


def test_dockerd_restart_with_live_restore(split: SplitDockyard, daemon: PrivateDockerd,
                                           pair: Any) -> None:
    a, _ = pair
    before = state(split, "ra")
    daemon.restart()
    assert state(split, "ra") == before
    assert ping(a["ip"], 3)
    split.ok("stop", "ra")  # the agent re-adopted it: it still drives it
    split.ok("start", "ra")
    assert ping(a["ip"], 3)


def test_host_reboot_restarts_and_replumbs(split: SplitDockyard, daemon: PrivateDockerd,
                                           pair: Any) -> None:
    a, b = pair
    split.stop_agent(signal.SIGKILL)
    ids = daemon.docker("ps", "-q").stdout.split()
    assert ids
    daemon.docker("stop", "-t", "2", *ids)  # the machine goes down
    daemon.restart()
    assert not ping(a["ip"])
    split.start_agent()
    wait_for(lambda: ping(a["ip"]))
    shown = split.ok("show", "ra", "--json").json()
    assert (shown["state"], shown["ip"], shown["mac"]) == ("running", a["ip"], a["mac"])
    link = split.ok("exec", "ra", "--", "ip", "link", "show", "eth0").out
    assert a["mac"] in link
    assert split.ok("show", "rb", "--json").json()["state"] == "stopped"  # stays as asked
    assert not ping(b["ip"])


def test_bridge_deleted_from_outside_is_repaired(split: SplitDockyard, pair: Any) -> None:
    bridge = next(iter(split.bridges))
    subprocess.run(["ip", "link", "del", bridge], check=True)
    c = split.ok("launch", IMAGE, "rd", "--json").json()
    try:
        assert ping(c["ip"], 3)
    finally:
        split.ok("delete", "rd", "--force")
    a, _ = pair
    split.ok("restart", "ra")  # re-plumbs onto the rebuilt bridge
    assert ping(a["ip"], 3)


def test_ctrl_c_of_up_leaves_instances_running(dy: Dockyard) -> None:
    inst = dy.ok("launch", IMAGE, "survivor", "--json").json()
    try:
        assert dy.proc is not None
        dy.proc.send_signal(signal.SIGINT)
        dy.proc.wait(timeout=60)
        dy.proc = None
        assert ping(inst["ip"])
        running = [c for c in dy.containers() if c.labels["dockyard.instance"] == inst["id"]]
        assert running and running[0].status == "running"
        dy.start()
        shown = dy.ok("show", "survivor", "--json").json()
        assert shown["state"] == "running" and shown["container_id"] == inst["container_id"]
        assert ping(inst["ip"])
    finally:
        dy.cli("delete", "survivor", "--force")
