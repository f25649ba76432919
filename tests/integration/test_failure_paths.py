"""Failures caused from outside, as the world causes them: image vanished, veth name taken,
dockerd stopped mid-create, disk write refused, IP pool full. Each ends rolled back (or, for a
dockerd that comes back, finished) with nothing leaked; `assert_no_leaks` runs after each."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import DockyardError
from tests.integration.dockerd_env import PrivateDockerd
from tests.integration.dockyard_env import IMAGE, Dockyard, free_subnet, host_links
from tests.integration.split_env import SplitDockyard


def until(check: Callable[[], bool], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


class Paused:
    """The agent runs with `pause:POINT`; the test acts while it waits there."""

    def __init__(self, env: SplitDockyard, point: str) -> None:
        self.env, self.point = env, point
        self.hits_before = self._hits()

    def _hits(self) -> int:
        return self.env.marker.read_text().split().count(self.point) \
            if self.env.marker.exists() else 0

    @property
    def _release_file(self) -> Path:
        return self.env.root / "faults-hit.release"

    def __enter__(self) -> Paused:
        self._release_file.unlink(missing_ok=True)
        self.env.stop_agent()
        self.env.start_agent(fault=f"pause:{self.point}")
        return self

    def wait(self) -> None:
        until(lambda: self._hits() > self.hits_before, timeout=30)

    def release(self) -> None:
        self._release_file.touch()

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.env.stop_agent()
        self._release_file.unlink(missing_ok=True)
        self.env.start_agent()


def launch_async(env: SplitDockyard, name: str) -> dict[str, Any]:
    with env.api() as api:
        return dict(api.post("/v1/instances", {"name": name, "image": env.image}))


def gone(env: SplitDockyard, name: str) -> bool:
    return env.cli("show", name).code != 0


def failed_event(env: SplitDockyard, name: str) -> str:
    with env.api() as api:
        events = api.get("/v1/events", limit=1000)["items"]
    messages = [e["message"] for e in events
                if e["kind"] == "create_failed" and e["instance_name"] == name]
    assert messages, f"no create_failed event for {name}"
    return messages[-1]


def operation_error(env: SplitDockyard, op_id: str) -> str:
    with env.api() as api:
        op = api.get(f"/v1/operations/{op_id}")
    assert op["status"] == "failure", op
    return str(op["error"])


@pytest.fixture
def image(split: SplitDockyard, daemon: PrivateDockerd) -> Iterator[str]:
    """A throw-away tag of the base image, so removing it hurts nobody."""
    tag = "dockyard/vanishing:1"
    daemon.docker("tag", IMAGE, tag)
    split.image = tag
    yield tag
    daemon.docker("rmi", "-f", tag)
    split.image = IMAGE


def test_image_vanished_before_create(split: SplitDockyard, daemon: PrivateDockerd,
                                      image: str) -> None:
    with Paused(split, "agent.create.files_written") as pause:
        inst = launch_async(split, "vanish")
        pause.wait()
        assert daemon.docker("rmi", "-f", image).returncode == 0
        pause.release()
        until(lambda: gone(split, "vanish"))
    assert "image" in failed_event(split, "vanish")
    assert "image" in operation_error(split, inst["operation"])


def test_veth_name_taken(split: SplitDockyard, image: str) -> None:
    with Paused(split, "agent.create.started") as pause:
        inst = launch_async(split, "vethtaken")
        pause.wait()
        taken = f"dyh{inst['id']}"
        subprocess.run(["ip", "link", "add", taken, "type", "bridge"], check=True)
        try:
            pause.release()
            until(lambda: gone(split, "vethtaken"))
            assert taken in host_links()  # not ours: left alone
        finally:
            subprocess.run(["ip", "link", "del", taken], capture_output=True)
    assert failed_event(split, "vethtaken")


def test_disk_write_refused(split: SplitDockyard, image: str) -> None:
    files = split.home / "agent" / "instances"
    files.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(files)], check=True)
    try:
        with split.api() as api, pytest.raises(DockyardError) as info:
            api.post("/v1/instances", {"name": "nodisk", "image": image}, wait="true")
        assert "cannot write" in info.value.message
        until(lambda: gone(split, "nodisk"))
    finally:
        subprocess.run(["chattr", "-i", str(files)], check=True)
    assert "cannot write" in failed_event(split, "nodisk")


def test_dockerd_stopped_mid_create(split: SplitDockyard, daemon: PrivateDockerd,
                                    image: str) -> None:
    with Paused(split, "agent.create.container_created") as pause:
        launch_async(split, "nodockerd")
        pause.wait()
        daemon.stop()
        pause.release()
        time.sleep(2.0)  # the agent retries while dockerd is away; nothing is torn down
        daemon.start()
        try:
            until(lambda: split.cli("show", "nodockerd", "--json").code == 0 and
                  split.cli("show", "nodockerd", "--json").json()["state"] == "running")
        except AssertionError as exc:
            raise AssertionError(split.cli("show", "nodockerd").out + split.log_tail()) from exc
    inst = split.ok("show", "nodockerd", "--json").json()
    assert subprocess.run(["ping", "-c1", "-W2", inst["ip"]]).returncode == 0
    split.ok("delete", "nodockerd", "--force")


def test_ip_pool_full(dy: Dockyard) -> None:
    subnet = free_subnet("10.245.0.0/16", 29)
    net = dy.ok("network", "create", "tiny", "--subnet", subnet, "--json").json()
    dy.bridges.add(net["bridge"])
    names = [f"tiny{n}" for n in range(5)]  # /29: 6 hosts, one is the gateway
    try:
        for name in names:
            dy.ok("launch", IMAGE, name, "--network", "tiny")
        before = dy.db_query("SELECT COUNT(*) FROM ip_allocations")
        full = dy.cli("launch", IMAGE, "tiny-extra", "--network", "tiny")
        assert full.code != 0 and "no free address" in full.err
        assert dy.db_query("SELECT COUNT(*) FROM ip_allocations") == before
        assert dy.cli("show", "tiny-extra").code != 0
    finally:
        for name in names:
            dy.cli("delete", name, "--force")
        dy.cli("network", "delete", "tiny")
