"""The dev-cluster's host pieces through the adapters, on the real machine (issue 17 item 5):
an own OVS in a fresh netns (ovs.create_db/init_db/vswitchd_ready/purge_flows,
processes.alive) and the removal of a cgroup parent under /sys/fs/cgroup (cgroups.remove_tree)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.adapters import cgroups, ovs, processes
from dockyard.devcluster import plumbing
from dockyard.errors import BackendError


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"dyut{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def test_an_own_ovs_in_a_netns_starts_answers_and_stops(netns: str, tmp_path: Path) -> None:
    root = tmp_path / "ovs"
    # started from another process, as `dev-cluster up` does (here the daemons' Popen
    # objects would be collected while they run)
    code = ("import sys; from pathlib import Path; from dockyard.devcluster import plumbing; "
            "print(*plumbing.start_ovs(sys.argv[1], Path(sys.argv[2])))")
    started = subprocess.run([sys.executable, "-c", code, netns, str(root)],
                             capture_output=True, text=True, timeout=120, check=True)
    dbpid, swpid = (int(pid) for pid in started.stdout.split())
    try:
        assert processes.alive(dbpid) and processes.alive(swpid)
        assert ovs.vswitchd_ready(str(root / "ovs-vswitchd.ctl"))
        ovs.init_db(f"unix:{root / 'db.sock'}")  # idempotent on a running database
        # an arrival's purge reaches this switch (the control socket beside its database)
        assert ovs.control(f"unix:{root / 'db.sock'}") == str(root / "ovs-vswitchd.ctl")
        ovs.purge_flows(f"unix:{root / 'db.sock'}")
    finally:
        plumbing.stop(swpid)
        plumbing.stop(dbpid)
    assert not processes.alive(swpid) and not processes.alive(dbpid)
    assert not ovs.vswitchd_ready(str(root / "ovs-vswitchd.ctl"))
    with pytest.raises(BackendError):  # and says so when there is no switch to purge
        ovs.purge_flows(f"unix:{root / 'db.sock'}")


def test_remove_cgroups_removes_the_parent_in_every_hierarchy() -> None:
    if cgroups.cgroup_version() != 1:
        pytest.skip("remove_tree walks the v1 hierarchies")
    parent = f"dyut{secrets.token_hex(3)}"
    made = [Path(cgroups.ROOT, h, parent, "child") for h in ("pids", "memory")
            if Path(cgroups.ROOT, h).is_dir()]
    assert made
    try:
        for path in made:
            path.mkdir(parents=True)
        plumbing.remove_cgroups(parent)
        assert [p.parent for p in made if p.parent.exists()] == []
    finally:
        for path in made:
            for left in (path, path.parent):
                if left.exists():
                    os.rmdir(left)
