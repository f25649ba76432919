"""Housekeeping: size-capped logs, and orphans (this cluster's containers that the store does
not know) reported as events and stopped, never deleted."""

from __future__ import annotations

import time

import docker

from tests.integration.dockyard_env import IMAGE, Dockyard


def test_container_logs_are_size_capped(dy: Dockyard) -> None:
    inst = dy.ok("launch", IMAGE, "logcap", "--json").json()
    client = docker.from_env()
    try:
        log_config = client.api.inspect_container(inst["container_id"])["HostConfig"]["LogConfig"]
    finally:
        client.close()
        dy.cli("delete", "logcap", "--force")
    assert log_config["Type"] == "json-file"
    assert log_config["Config"] == {"max-size": "10m", "max-file": "3"}


def test_orphan_is_reported_and_stopped_never_deleted(dy: Dockyard) -> None:
    client = docker.from_env()
    orphan = client.containers.run(
        IMAGE, detach=True, name=f"dy-orphan{int(time.time())}", network_mode="none",
        labels={"dockyard.cluster": dy.cluster, "dockyard.instance": "0rphan000000",
                "dockyard.name": "orphan", "dockyard.generation": "1"})
    try:
        # found on its docker `start` event (the full resync, every 5 s in tests plus the
        # 20 s watch hold, would find it too, later)
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            orphan.reload()
            if orphan.status == "exited":
                break
            time.sleep(0.3)
        assert orphan.status == "exited"
        orphan.reload()  # stopped, still there

        def told() -> bool:  # the agent posts its event after the stop
            events = dy.ok("events", "--json").json()["items"]
            return any(e["kind"] == "orphan" and orphan.name in e["message"] for e in events)
        deadline = time.monotonic() + 15
        while not told() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert told()
    finally:
        orphan.remove(force=True)
        client.close()
