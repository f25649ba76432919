"""Adapters the dev-cluster's plumbing goes through: processes.alive, cgroups.remove_tree,
ovs's own-switch helpers (issue 17 item 5: no /proc, /sys or ovs-* outside adapters)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.adapters import cgroups, ovs, processes
from dockyard.errors import BackendError
from tests.requirements import requires
from tests.unit.fake_trees import write_tree


def test_alive_until_the_child_exits_and_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        assert processes.alive(child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    assert not processes.alive(child.pid)


def test_a_zombie_is_not_alive(tmp_path: Path) -> None:
    pid = os.getpid()  # exists, so kill(pid, 0) passes; the fake /proc says zombie
    write_tree(tmp_path, {f"{pid}/status": "Name:\tx\nState:\tZ (zombie)\n"})
    assert not processes.alive(pid, proc=str(tmp_path))
    write_tree(tmp_path, {f"{pid}/status": "Name:\tx\nState:\tS (sleeping)\n"})
    assert processes.alive(pid, proc=str(tmp_path))


def test_remove_tree_removes_the_parent_in_every_hierarchy(tmp_path: Path) -> None:
    for hierarchy in ("cpu", "memory", "pids"):
        (tmp_path / hierarchy / "dyc1h1" / "docker" / "abc").mkdir(parents=True)
    (tmp_path / "cpu" / "other").mkdir()
    write_tree(tmp_path, {"pids/dyc1h1/busy/cgroup.procs": "42\n"})  # rmdir fails: stays
    cgroups.remove_tree("dyc1h1", root=str(tmp_path))
    assert not (tmp_path / "cpu" / "dyc1h1").exists()
    assert not (tmp_path / "memory" / "dyc1h1").exists()
    assert (tmp_path / "pids" / "dyc1h1" / "busy").is_dir()
    assert not (tmp_path / "pids" / "dyc1h1" / "docker").exists()
    assert (tmp_path / "cpu" / "other").is_dir()


def test_remove_tree_on_a_unified_v2_tree_removes_root_parent(tmp_path: Path) -> None:
    """On v2 the parent is ROOT/PARENT itself (it looked only at ROOT/*/PARENT)."""
    write_tree(tmp_path, {"cgroup.controllers": "cpu memory pids\n"})
    (tmp_path / "dyc1h1" / "docker" / "abc").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    cgroups.remove_tree("dyc1h1", root=str(tmp_path))
    assert not (tmp_path / "dyc1h1").exists()
    assert (tmp_path / "other").is_dir()


@requires(shutil.which("ovsdb-tool") is not None and shutil.which("ovs-appctl") is not None,
          "ovsdb-tool and ovs-appctl", "the openvswitch-switch package")
def test_ovs_db_and_readiness(tmp_path: Path) -> None:
    schema = "/usr/share/openvswitch/vswitch.ovsschema"
    ovs.create_db(str(tmp_path / "conf.db"), schema)
    assert (tmp_path / "conf.db").stat().st_size > 0
    with pytest.raises(BackendError, match="ovsdb-tool"):  # exists already
        ovs.create_db(str(tmp_path / "conf.db"), schema)
    assert not ovs.vswitchd_ready(str(tmp_path / "no-such.ctl"))
