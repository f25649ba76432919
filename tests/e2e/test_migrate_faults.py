"""kill -9 of the server at each fault point of a cold migration (dev-cluster, two hosts).

The single-host split cluster of tests/integration/test_faults.py cannot migrate, so the
`server.migrate.*` points are driven here: the server runs under tests/faultrun.py with one
point armed, `migrate` kills it there, the server starts again and its recovery
(`migrate.recover`) rolls back or finishes. Then: the instance runs exactly once, on its
source or its target, at the IP it had, with its volume data; the other host holds no
container and no volume of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard import faults
from dockyard.model.volume import docker_volume_name
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster

POINTS = sorted(p for p in faults.POINTS if p.startswith("server.migrate."))
HIT: set[str] = set()


@pytest.fixture(scope="module")
def server(cluster: DevCluster) -> Iterator[hostctl.FaultServer]:
    if cluster.cli("network", "show", "mfault").returncode != 0:
        cluster.ok("network", "create", "mfault", "--subnet", "10.241.60.0/24")
    # started by us from now on (argv known), armed for each case's point in turn
    fault_server = hostctl.FaultServer(cluster.home, hostctl.stop_server(cluster.home))
    yield fault_server
    fault_server.disarm()


def _show(cluster: DevCluster, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(cluster.ok("show", name, "--json"))
    return shown



@pytest.mark.parametrize("point", POINTS)
def test_server_killed_mid_migration(cluster: DevCluster, server: hostctl.FaultServer,
                                     point: str) -> None:
    server.arm(point)  # (already, when the case before restarted it: `then`)
    name = "mf-" + point.rsplit(".", 1)[1].replace("_", "-")
    cluster.ok("launch", "dockyard/busybox", name, "--host", "host1", "--network", "mfault",
               "--no-lxcfs", "-v", f"{name}data:/data")
    before = _show(cluster, name)
    cluster.ok("exec", name, "--", "sh", "-c", "echo kept > /data/marker")
    vol = next(v for v in hostctl.listed(cluster.ok("volume", "list", "--json"))
               if v["name"] == f"{name}data")
    server.kill_at(point, lambda: cluster.cli("migrate", name, "--to", "host2"),
                   then=_after(point))  # the server dies on the way
    HIT.add(point)

    def settled() -> bool:  # (the event is written when the operation ends)
        return _show(cluster, name)["state"] == "running" and _migration_done(cluster, name)
    hostctl.until(settled, f"{name} running after recovery")
    after = _show(cluster, name)
    for key in ("ip", "mac", "hostname", "limits"):
        assert after[key] == before[key], key
    # migrate.recover finishes forward only once the target reported running (step
    # `running`); at every earlier point, `switched` included, it rolls back to the source
    forward = point == "server.migrate.running"
    assert after["host"] == ("host2" if forward else "host1")
    assert _migration_event(cluster, name) == ("migrated" if forward else "migrate_failed")
    # each switch of host (there, and back after `switched`) is a new generation
    moves = 1 if forward else 2 if point == "server.migrate.switched" else 0
    assert after["generation"] == before["generation"] + moves
    other = "host2" if after["host"] == "host1" else "host1"

    def clean() -> bool:
        running = [c for h in ("host1", "host2", "host3")
                   for c in hostctl.copies(cluster.home, h, after["id"]) if c[1] == "running"]
        assert len(running) == 1, running
        assert hostctl.copies(cluster.home, other, after["id"]) == []
        assert docker_volume_name(vol["id"]) not in hostctl.volumes(cluster.home, other)
        return True
    # after a kill at `switched` the target may be making its copy while the recovery
    # discards it: the discard waits for that sync (agent/runtime.py `forget`); before, the
    # copy was made after the discard and stayed on the target for good
    hostctl.until(clean, f"{name}: one copy, nothing left on {other}", timeout=60)
    marker = cluster.cli("exec", name, "--", "cat", "/data/marker")
    assert (marker.returncode, marker.stdout.strip()) == (0, "kept"), \
        f"{marker.stderr}; events: {cluster.ok('events', name)}"
    cluster.ok("delete", name, "--force")


def _after(point: str) -> str | None:
    """The point of the next case (the server restarts armed for it), None after the last."""
    at = POINTS.index(point) + 1
    return POINTS[at] if at < len(POINTS) else None


def _migration_event(cluster: DevCluster, name: str) -> str | None:
    """The kind of the event that ended the migration of `name` (None while it runs)."""
    kinds = [e["kind"] for e in hostctl.listed(cluster.ok("events", name, "--json"))
             if e["kind"] in ("migrated", "migrate_failed", "migrate_stuck")]
    return kinds[-1] if kinds else None


def _migration_done(cluster: DevCluster, name: str) -> bool:
    """The migrate operation of `name` is no longer running."""
    return _migration_event(cluster, name) is not None



def test_every_migration_fault_point_was_hit(cluster: DevCluster) -> None:
    assert set(POINTS) == HIT, f"never hit: {sorted(set(POINTS) - HIT)}"
