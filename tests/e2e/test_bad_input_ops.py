"""Bad input to images, snapshots, migration and evacuation: a clear 4xx, nothing changed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.client import ApiClient
from dockyard.errors import DockyardError
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster

MIB = 1 << 20


@pytest.fixture(scope="module")
def api(cluster: DevCluster) -> Iterator[ApiClient]:
    config = json.loads(Path(cluster.env["DOCKYARD_CONFIG"]).read_text())
    client = ApiClient(config["url"], config["token"], timeout=180)
    try:
        yield client
    finally:
        client.close()


def _status(call: Any) -> tuple[int, str]:
    try:
        call()
    except DockyardError as exc:
        return exc.status, exc.message
    raise AssertionError("accepted")


def _network(cluster: DevCluster) -> None:
    if cluster.cli("network", "show", "bad").returncode != 0:
        cluster.ok("network", "create", "bad", "--subnet", "10.241.50.0/24")


def _launch(cluster: DevCluster, name: str, host: str, *extra: str,
            image: str = "dockyard/busybox") -> dict[str, Any]:
    cluster.ok("launch", image, name, "--host", host, "--network", "bad", "--no-lxcfs", *extra)
    shown: dict[str, Any] = json.loads(cluster.ok("show", name, "--json"))
    return shown


def _same(api: ApiClient, name: str, before: dict[str, Any]) -> None:
    now = api.get(f"/v1/instances/{name}")
    for key in ("host", "state", "ip", "mac", "generation", "image"):
        assert now[key] == before[key], (key, now[key], before[key])


def test_image_in_use_and_not_an_archive(cluster: DevCluster, api: ApiClient) -> None:
    _network(cluster)
    archive = cluster.home / "inuse.tar"
    subprocess.run(["docker", "save", "-o", str(archive), "dockyard/busybox:latest"],
                   check=True, timeout=120)
    cluster.ok("image", "import", str(archive), "bad/busybox:inuse", "--host", "host1")
    archive.unlink()
    inst = _launch(cluster, "badsnap", "host1", image="bad/busybox:inuse")
    cluster.ok("snapshot", "create", "badsnap", "--tag", "badsnap-a")
    snap = next(s for s in _snapshots(api) if s["name"] == "badsnap-a")
    catalog = api.get("/v1/images")
    for ref in (inst["image"], snap["image"]):  # an instance's, a snapshot's
        path = ref.split("/", 1)[1]  # without the registry address
        status, message = _status(lambda p=path: api.delete(f"/v1/images/{p}"))
        assert status == 409 and ("used" in message or "in use" in message), message
    assert api.get("/v1/images") == catalog
    # import of a file that is not a `docker save` archive
    junk = cluster.home / "junk.tar"
    junk.write_bytes(b"this is not a tar archive\n" * 100)
    with junk.open("rb") as fh:
        status, message = _status(lambda: api.upload("/v1/images/import", fh,
                                                     name="junk/image:1", host="host1"))
    assert 400 <= status < 500, (status, message)
    assert "junk/image" not in json.dumps(api.get("/v1/images"))
    proc = cluster.cli("image", "import", str(junk), "junk/image:1", "--host", "host1")
    assert proc.returncode != 0 and "error" in proc.stderr.lower()
    _same(api, "badsnap", inst)
    cluster.ok("snapshot", "delete", "badsnap-a")
    cluster.ok("delete", "badsnap", "--force")


def test_migrate_to_a_full_or_down_host_and_evacuate_refusals(
        cluster: DevCluster, api: ApiClient) -> None:
    _network(cluster)
    mover = _launch(cluster, "badmove", "host1", "--memory", "1G")
    host3 = api.get("/v1/hosts/host3")
    free = host3["memory_bytes"] - host3["memory_reserved_bytes"]
    hog = (free - 512 * MIB) // MIB
    _launch(cluster, "badhog", "host3", "--memory", f"{hog}M")
    try:
        status, message = _status(lambda: api.post("/v1/instances/badmove/migrate",
                                                   {"host": "host3"}))
        assert status == 409 and "memory" in message, message  # the scheduler's reason
        _same(api, "badmove", mover)
    finally:
        cluster.ok("delete", "badhog", "--force")
    # the same host, an unknown host
    assert _status(lambda: api.post("/v1/instances/badmove/migrate", {"host": "host1"}))[0] \
        == 409
    assert _status(lambda: api.post("/v1/instances/badmove/migrate", {"host": "nohost"}))[0] \
        == 404
    # evacuate: an unknown host, an up host without --force
    assert _status(lambda: api.post("/v1/hosts/nohost/evacuate", {"force": False}))[0] == 404
    status, message = _status(lambda: api.post("/v1/hosts/host3/evacuate", {"force": False}))
    assert status == 409 and "up" in message, message
    _same(api, "badmove", mover)

    # a down host (agent gone): 409 with the scheduler's reason
    agent = hostctl.stop_agent(cluster.home, "host3")
    try:
        _until(lambda: api.get("/v1/hosts/host3")["state"] == "down")
        status, message = _status(lambda: api.post("/v1/instances/badmove/migrate",
                                                   {"host": "host3"}))
        assert status == 409 and "down" in message, message
        _same(api, "badmove", mover)
    finally:
        since = _last_event(api)
        hostctl.start_agent(cluster.home, "host3", agent)
    _wait_agent(api, "host3", since)
    cluster.ok("delete", "badmove", "--force")


def test_snapshot_of_an_instance_in_creating(cluster: DevCluster, api: ApiClient) -> None:
    """host2's agent waits at a create fault point: the instance stays `creating`."""
    _network(cluster)
    marker = cluster.home / "creating.marker"
    agent = hostctl.stop_agent(cluster.home, "host2")
    since = _last_event(api)
    paused = hostctl.start_agent(cluster.home, "host2", agent,
                                 fault=("pause:agent.create.files_written", marker))
    try:
        _wait_agent(api, "host2", since)
        api.post("/v1/instances", {"name": "badcreating", "image": "dockyard/busybox",
                                   "host": "host2", "network": "bad", "lxcfs": False})
        _until(lambda: marker.exists())
        before = api.get("/v1/instances/badcreating")
        assert before["state"] == "creating", before
        status, message = _status(lambda: api.post("/v1/instances/badcreating/snapshot",
                                                   {"tag": "never"}))
        assert status == 409 and "creating" in message, message
        assert not [s for s in _snapshots(api) if s["name"] == "never"]
        assert api.get("/v1/instances/badcreating")["state"] == "creating"
    finally:
        Path(f"{marker}.release").touch()
    _until(lambda: api.get("/v1/instances/badcreating")["state"] == "running", timeout=120)
    cluster.ok("delete", "badcreating", "--force")
    hostctl.stop_agent(cluster.home, "host2", pid=paused)  # back to the plain agent
    since = _last_event(api)
    hostctl.start_agent(cluster.home, "host2", agent)
    _wait_agent(api, "host2", since)


def _last_event(api: ApiClient) -> int:
    """The id of the newest event (a mark: events are listed oldest first)."""
    after = 0
    while (page := api.get("/v1/events", after=after, limit=1000))["items"]:
        after = int(page["items"][-1]["id"])
    return after


def _wait_agent(api: ApiClient, host: str, since: int) -> None:
    """Until the restarted agent has registered (its new API address is known): a
    `host_registered` event of `host` after the mark `since`. (Its last heartbeat is no such
    sign: the server's batched flush may write it for the stopped agent's last call after
    the mark.)"""
    def registered() -> bool:
        events = api.get("/v1/events", after=since, limit=1000)["items"]
        return any(e["kind"] == "host_registered" and e["host"] == host for e in events)
    _until(registered, timeout=60)


def _snapshots(api: ApiClient) -> list[dict[str, Any]]:
    return list(api.get("/v1/snapshots")["items"])


def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError("not in time")
