"""Snapshots and cold migration on the dev-cluster: identity and data survive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dockyard.devcluster import plumbing, state
from tests.e2e.conftest import DevCluster


def _launch(cluster: DevCluster, name: str, host: str, *extra: str) -> dict[str, object]:
    cluster.ok("launch", "dockyard/busybox", name, "--host", host, "--network", "mig",
               "--no-lxcfs", *extra)
    shown: dict[str, object] = json.loads(cluster.ok("show", name, "--json"))
    return shown


def _sh(cluster: DevCluster, name: str, script: str) -> str:
    return cluster.ok("exec", name, "--", "sh", "-c", script)


def _starttime(cluster: DevCluster, name: str) -> str:
    return _sh(cluster, name, "cut -d' ' -f22 /proc/1/stat").strip()


def _network(cluster: DevCluster) -> None:
    if cluster.cli("network", "show", "mig").returncode != 0:
        cluster.ok("network", "create", "mig", "--subnet", "10.241.30.0/24")


def test_snapshot_while_running_and_launch_elsewhere(cluster: DevCluster) -> None:
    _network(cluster)
    _launch(cluster, "snap1", "host1", "-v", "snap1data:/data")
    _sh(cluster, "snap1", "echo root-marker > /marker; echo vol-marker > /data/marker")
    before = _starttime(cluster, "snap1")
    cluster.ok("snapshot", "create", "snap1", "--tag", "snap1-a")
    assert _starttime(cluster, "snap1") == before  # the same process: never restarted
    assert "snap1-a" in cluster.ok("snapshot", "list", "snap1")
    copy = json.loads(cluster.ok("launch", "snap1-a", "snap1copy", "--host", "host2",
                                 "--network", "mig", "--no-lxcfs", "--json"))
    assert copy["host"] == "host2"
    assert _sh(cluster, "snap1copy", "cat /marker /data/marker").split() == [
        "root-marker", "vol-marker"]
    assert cluster.cli("snapshot", "delete", "nope").returncode != 0
    assert cluster.cli("image", "delete", "no/such:image").returncode != 0


def test_cold_migration_keeps_identity_and_data(cluster: DevCluster) -> None:
    _network(cluster)
    before = _launch(cluster, "mover", "host1", "-v", "moverdata:/data", "--memory", "96M")
    _launch(cluster, "pinger", "host3")
    _sh(cluster, "mover", "echo early > /data/early; echo rootfile > /rootfile")
    _sh(cluster, "mover", "echo late > /data/late")
    time.sleep(1.0)
    result = json.loads(cluster.ok("migrate", "mover", "--to", "host2", "--json"))
    after = json.loads(cluster.ok("show", "mover", "--json"))
    assert after["host"] == "host2" and result["target"] == "host2"
    for key in ("ip", "mac", "hostname", "limits"):
        assert after[key] == before[key], key
    assert after["generation"] == int(str(before["generation"])) + 1
    assert _sh(cluster, "mover", "cat /data/early /data/late /rootfile").split() == [
        "early", "late", "rootfile"]
    assert cluster.reaches("pinger", str(after["ip"]))
    assert cluster.cli("migrate", "mover", "--to", "host2").returncode != 0  # same host
    assert cluster.cli("migrate", "mover", "--to", "nohost").returncode != 0


def test_failed_migration_leaves_the_instance_on_its_source(cluster: DevCluster) -> None:
    _network(cluster)
    before = _launch(cluster, "stayer", "host1", "-v", "stayerdata:/data")
    st = state.load(cluster.home)
    assert st is not None
    host3 = st.host("host3")
    os.kill(host3.pids["dockerd"], signal.SIGTERM)
    _wait_gone(host3.pids["dockerd"])
    try:
        failed = cluster.cli("migrate", "stayer", "--to", "host3")
        assert failed.returncode != 0
    finally:
        host3.pids["dockerd"] = _restart_dockerd(host3)
        st.save()
    # a rollback, not an up-front refusal: the migration began (operation, event) on host3's
    # agent, failed there and was undone (migrate.rollback's answer and event)
    assert "the instance runs on its source host again" in failed.stderr, failed.stderr
    events = [e for e in json.loads(cluster.ok("events", "stayer", "--json"))["items"]
              if e["kind"].startswith("migrat")]
    assert [e["kind"] for e in events] == ["migrate", "migrate_failed"], events
    assert "host1 -> host3" in events[0]["message"]
    assert "back on host1" in events[1]["message"]
    after = json.loads(cluster.ok("show", "stayer", "--json"))
    assert after["host"] == "host1" and after["state"] == "running"
    assert after["ip"] == before["ip"]
    assert after["generation"] == before["generation"]  # never switched: no fencing
    assert not after.get("options", {}).get("migrating")
    _sh(cluster, "stayer", "true")


def _restart_dockerd(host: state.SimHost) -> int:
    """In a child process, which owns the Popen (the daemon outlives it, detached)."""
    code = ("import sys; from pathlib import Path; from dockyard.devcluster import plumbing; "
            "print(plumbing.start_dockerd(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))")
    out = subprocess.run([sys.executable, "-c", code, host.netns,
                          str(Path(host.root) / "docker"), host.cgroup_parent],
                         capture_output=True, text=True, check=True, timeout=180)
    return int(out.stdout.strip().splitlines()[-1])


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while plumbing.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
