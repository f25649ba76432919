"""Evacuation of a down host (and fencing when it returns), rebuild onto another image."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.devcluster import plumbing
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster

MACHINE = "dockyard/machine:bookworm"


def _network(cluster: DevCluster) -> None:
    if cluster.cli("network", "show", "evac").returncode != 0:
        cluster.ok("network", "create", "evac", "--subnet", "10.241.40.0/24")


def _launch(cluster: DevCluster, name: str, host: str, *extra: str) -> dict[str, object]:
    cluster.ok("launch", "dockyard/busybox", name, "--host", host, "--network", "evac",
               "--no-lxcfs", *extra)
    shown: dict[str, object] = json.loads(cluster.ok("show", name, "--json"))
    return shown


def _show(cluster: DevCluster, name: str) -> dict[str, object]:
    shown: dict[str, object] = json.loads(cluster.ok("show", name, "--json"))
    return shown


def _until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def _host_state(cluster: DevCluster, name: str) -> str:
    return str(json.loads(cluster.ok("host", "show", name, "--json"))["state"])


def _ping(cluster: DevCluster, src: str, ip: str) -> str:
    """Output of 5 pings (busybox marks a second answer to one request with DUP!)."""
    proc = cluster.cli("exec", src, "--", "ping", "-c", "5", "-i", "0.2", "-W", "2", ip)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_evacuate_a_down_host_and_fence_it_when_it_returns(cluster: DevCluster) -> None:
    _network(cluster)
    home = cluster.home
    plain = _launch(cluster, "ev1", "host2")
    snapped = _launch(cluster, "ev2", "host2", "-v", "ev2data:/data")
    _launch(cluster, "evping", "host1")
    cluster.ok("exec", "ev2", "--", "sh", "-c", "echo root > /marker; echo vol > /data/marker")
    cluster.ok("snapshot", "create", "ev2", "--tag", "ev2-last")
    cluster.ok("exec", "ev2", "--", "sh", "-c", "echo after > /data/after-snapshot")
    assert cluster.cli("evacuate", "host2").returncode != 0  # up: refused without --force

    # host2 goes away: agent killed, dockerd stopped (live-restore: its containers keep
    # running) and its uplink cut, so the stale copies cannot answer on the fabric meanwhile
    agent = hostctl.stop_agent(home, "host2")
    restarted = False
    try:
        hostctl.stop_dockerd(home, "host2")
        cluster.ok("dev-cluster", "cut-uplink", "host2", "--home", str(home))
        _until(lambda: _host_state(cluster, "host2") == "down", "host2 down", timeout=30)
        reply = json.loads(cluster.ok("evacuate", "host2", "--json"))
        assert set(reply["moved"]) >= {"ev1", "ev2"} and not reply["failed"], reply
        for name, before in (("ev1", plain), ("ev2", snapped)):
            _until(lambda n=name: _show(cluster, n)["state"] == "running", f"{name} running")
            after = _show(cluster, name)
            assert after["host"] in ("host1", "host3")
            assert after["ip"] == before["ip"] and after["mac"] == before["mac"]
            assert after["generation"] == int(str(before["generation"])) + 1
            assert "DUP!" not in _ping(cluster, "evping", str(after["ip"]))
        # re-placed from its last snapshot: root and volume as they were then
        assert cluster.ok("exec", "ev2", "--", "cat", "/marker", "/data/marker").split() == [
            "root", "vol"]
        assert cluster.cli("exec", "ev2", "--", "test", "-e", "/data/after-snapshot"
                           ).returncode != 0

        # host2 returns, still cut off: its agent fences the stale copies before the uplink
        hostctl.start_dockerd(home, "host2")
        stale = {n: hostctl.copies(home, "host2", str(s["id"]))
                 for n, s in (("ev1", plain), ("ev2", snapped))}
        assert all(stale.values()), stale  # live-restore kept them, running
        assert all(any(st == "running" for _, st in c) for c in stale.values()), stale
        hostctl.start_agent(home, "host2", agent)
        restarted = True
        _until(lambda: _host_state(cluster, "host2") == "up", "host2 up", timeout=60)
        for name, shown in (("ev1", plain), ("ev2", snapped)):
            _until(lambda i=str(shown["id"]): all(
                st != "running" for _, st in hostctl.copies(home, "host2", i)),
                f"stale {name} stopped on host2", timeout=60)
            kept = hostctl.copies(home, "host2", str(shown["id"]))
            assert kept and len(kept) == len(stale[name]), kept  # stopped, never deleted
    finally:
        if not plumbing.alive(_pid(home, "dockerd")):
            hostctl.start_dockerd(home, "host2")
        if not restarted:
            hostctl.start_agent(home, "host2", agent)
        cluster.ok("dev-cluster", "restore-uplink", "host2", "--home", str(home))
    _until(lambda: _host_state(cluster, "host2") == "up", "host2 up", timeout=60)

    # back on the fabric: each IP answers once, from the evacuated copy
    for name in ("ev1", "ev2"):
        after = _show(cluster, name)
        assert after["host"] != "host2" and after["state"] == "running"
        out = _ping(cluster, "evping", str(after["ip"]))
        assert "DUP!" not in out, out
        macs, replies = _arp_replies(cluster, "evping", str(after["ip"]))
        assert macs == {str(after["mac"]).lower()} and 1 <= replies <= 3, (macs, replies)
        assert all(st != "running" for _, st in hostctl.copies(home, "host2", str(after["id"])))
    # host2 is healthy for later tests: it runs a new instance
    _launch(cluster, "ev3", "host2")
    assert cluster.reaches("evping", str(_show(cluster, "ev3")["ip"]))
    _cleanup(cluster, "ev1", "ev2", "ev3", "evping")  # later tests count instances per host
    cluster.cli("snapshot", "delete", "ev2-last")


LOST_STACK = """
services:
  web:
    image: dockyard/busybox
    command: [sleep, "1000000"]
    networks: [evac]
networks:
  evac: {external: true}
"""


def test_a_stack_replica_moves_off_a_lost_host(cluster: DevCluster, tmp_path: Path) -> None:
    """Issue 12: a replica's host cut off → the stacks loop moves it elsewhere by itself
    (same name and IP, new generation) once the host is silent for two heartbeat timeouts;
    the copy left behind is stopped (fenced), never deleted, when the host returns."""
    _network(cluster)
    home = cluster.home
    compose = tmp_path / "compose.yaml"
    compose.write_text(LOST_STACK)
    for other in ("host1", "host3"):  # the replica goes to host2
        cluster.ok("host", "drain", other)
    try:
        cluster.ok("stack", "deploy", "lost", "-f", str(compose))
    finally:
        for other in ("host1", "host3"):
            cluster.ok("host", "undrain", other)
    before = _show(cluster, "lost-web-1")
    assert before["host"] == "host2" and before["state"] == "running", before
    agent = hostctl.stop_agent(home, "host2")
    restarted = False
    try:
        hostctl.stop_dockerd(home, "host2")
        cluster.ok("dev-cluster", "cut-uplink", "host2", "--home", str(home))
        _until(lambda: _show(cluster, "lost-web-1")["host"] != "host2"
               and _show(cluster, "lost-web-1")["state"] == "running",
               "lost-web-1 moved off host2 and running", timeout=90)
        after = _show(cluster, "lost-web-1")
        assert after["ip"] == before["ip"] and after["mac"] == before["mac"]
        assert after["generation"] == int(str(before["generation"])) + 1
        events = json.loads(cluster.ok("events", "--json"))
        items = events["items"] if isinstance(events, dict) else events
        assert any("moved lost-web-1 off lost host host2" in str(e.get("message"))
                   for e in items), items[-10:]
        hostctl.start_dockerd(home, "host2")
        hostctl.start_agent(home, "host2", agent)
        restarted = True
        _until(lambda: _host_state(cluster, "host2") == "up", "host2 up", timeout=60)
        _until(lambda: all(st != "running" for _, st in
                           hostctl.copies(home, "host2", str(before["id"]))),
               "the stale replica stopped on host2", timeout=60)
        assert hostctl.copies(home, "host2", str(before["id"]))  # stopped, never deleted
    finally:
        if not plumbing.alive(_pid(home, "dockerd")):
            hostctl.start_dockerd(home, "host2")
        if not restarted:
            hostctl.start_agent(home, "host2", agent)
        cluster.ok("dev-cluster", "restore-uplink", "host2", "--home", str(home))
        cluster.cli("stack", "rm", "lost")
    _until(lambda: _host_state(cluster, "host2") == "up", "host2 up", timeout=60)


def _cleanup(cluster: DevCluster, *names: str) -> None:
    for name in names:
        cluster.cli("delete", name, "--force")


def _pid(home: Path, daemon: str) -> int:
    from dockyard.devcluster import state
    st = state.load(home)
    assert st is not None
    return st.host("host2").pids[daemon]


def _arp_replies(cluster: DevCluster, src: str, ip: str) -> tuple[set[str], int]:
    """3 broadcast ARP requests for `ip` (-b: never unicast, so every holder of the IP on
    the VLAN hears each one): the MACs that answered and how many answers came."""
    proc = cluster.cli("exec", src, "--", "arping", "-b", "-c", "3", "-w", "4", "-I", "eth0",
                       ip)
    replies = [line for line in proc.stdout.splitlines()
               if "reply from" in line.lower() and "[" in line]
    return {r.split("[", 1)[1].split("]", 1)[0].lower() for r in replies}, len(replies)


@pytest.fixture(scope="module")
def other_image(cluster: DevCluster) -> str:
    """The machine image in the cluster registry (imported from the main engine), else a
    second busybox tag."""
    listed = cluster.cli("image", "list", "--json")
    if MACHINE in listed.stdout:
        return MACHINE
    have = subprocess.run(["docker", "image", "inspect", MACHINE], capture_output=True)
    source, ref = (MACHINE, MACHINE) if have.returncode == 0 else (
        "dockyard/busybox:latest", "dockyard/busybox:second")
    archive = cluster.home / "other-image.tar"
    subprocess.run(["docker", "save", "-o", str(archive), source], check=True, timeout=300)
    try:
        proc = cluster.cli("image", "import", str(archive), ref, "--host", "host1",
                           timeout=600)
        assert proc.returncode == 0, proc.stderr + proc.stdout
    finally:
        archive.unlink(missing_ok=True)
    return ref


def test_rebuild_keeps_identity_and_volume_data(cluster: DevCluster, other_image: str) -> None:
    _network(cluster)
    before = _launch(cluster, "rb1", "host3", "-v", "rb1data:/data", "--memory", "128M",
                     "--hostname", "rb1-host")
    _launch(cluster, "rbping", "host1")
    cluster.ok("exec", "rb1", "--", "sh", "-c", "echo kept > /data/marker")
    cluster.ok("rebuild", "rb1", "--image", other_image)
    after = _show(cluster, "rb1")
    assert after["state"] == "running" and after["host"] == "host3"
    for key in ("name", "ip", "mac", "hostname", "limits"):
        assert after[key] == before[key], key
    assert after["image"] != before["image"] and other_image.split(":")[0] in str(after["image"])
    assert after["generation"] == int(str(before["generation"])) + 1
    assert cluster.ok("exec", "rb1", "--", "cat", "/data/marker").strip() == "kept"
    assert cluster.ok("exec", "rb1", "--", "hostname").strip() == before["hostname"]
    if other_image == MACHINE:  # really the other root filesystem
        assert "bookworm" in cluster.ok("exec", "rb1", "--", "cat", "/etc/os-release")
    assert cluster.reaches("rbping", str(after["ip"]))
    # the old container is set aside (stopped, kept), never deleted
    names = hostctl.copies(cluster.home, "host3", str(after["id"]))
    assert len(names) == 2 and sum(st == "running" for _, st in names) == 1, names
    _cleanup(cluster, "rb1", "rbping")
