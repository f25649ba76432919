"""Single-host acceptance: two instances on a real bridge, real cgroups, real dockerd."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from dockyard.scheduler.cpusets import parse_cpuset
from tests.cgroup_limits import read_limits
from tests.integration.dockyard_env import IMAGE, Dockyard, host_links, pid_of


def ping(ip: str) -> bool:
    return subprocess.run(["ping", "-c1", "-W2", ip], capture_output=True).returncode == 0


@pytest.fixture
def pair(dy: Dockyard) -> Iterator[tuple[dict, dict]]:
    """`excl` with one exclusive core and 64M; `shared` in the shared pool."""
    excl = dy.ok("launch", IMAGE, "excl", "--cores", "1", "--memory", "64M", "--pids", "200",
                 "--hostname", "box-one", "--json").json()
    shared = dy.ok("launch", IMAGE, "shared", "--json").json()
    try:
        yield excl, shared
    finally:
        for name in ("excl", "shared"):
            dy.cli("delete", name, "--force")


def test_two_instances_network_hostname_and_limits(dy: Dockyard, pair: tuple[dict, dict]) -> None:
    excl, shared = pair
    assert excl["state"] == "running" and shared["state"] == "running"
    assert excl["ip"] != shared["ip"]
    # each IP answers from the host, and they reach each other over the bridge
    assert ping(excl["ip"]) and ping(shared["ip"])
    result = dy.cli("exec", "excl", "--", "ping", "-c1", "-W2", shared["ip"])
    assert result.code == 0, result.err
    # hostname and /etc/hosts inside
    assert dy.ok("exec", "excl", "--", "hostname").out.strip() == "box-one"
    hosts = dy.ok("exec", "excl", "--", "cat", "/etc/hosts").out
    assert f"{excl['ip']}\tbox-one" in hosts
    # eth0 has the MAC derived from the IP
    link = dy.ok("exec", "excl", "--", "ip", "link", "show", "eth0").out
    assert excl["mac"] in link
    # cgroups: cpuset, memory, pids of the exclusive instance
    limits = read_limits(pid_of(excl["container_id"]))
    assert limits.cpuset == excl["limits"]["cpuset"]
    assert len(parse_cpuset(limits.cpuset)) == 1
    assert limits.memory_limit == 64 * 1024 * 1024
    assert limits.pids_max == 200
    # the shared-pool instance never runs on the exclusive core, live
    shared_now = dy.ok("show", "shared", "--json").json()
    shared_cores = set(parse_cpuset(read_limits(pid_of(shared["container_id"])).cpuset))
    assert shared_cores == set(parse_cpuset(shared_now["limits"]["cpuset"]))
    assert not shared_cores & set(parse_cpuset(excl["limits"]["cpuset"]))
    assert read_limits(pid_of(shared["container_id"])).pids_max == 4096


def test_shared_pool_is_repinned_when_exclusive_cores_come_and_go(dy: Dockyard) -> None:
    dy.ok("launch", IMAGE, "pool")
    try:
        before = dy.ok("show", "pool", "--json").json()
        all_cores = set(dy.ok("host", "show", "local", "--json").json()["cores"])
        assert set(parse_cpuset(before["limits"]["cpuset"])) == all_cores
        excl = dy.ok("launch", IMAGE, "pin", "--cores", "1", "--json").json()
        taken = set(parse_cpuset(excl["limits"]["cpuset"]))
        want = all_cores - taken
        pid = pid_of(before["container_id"])
        for _ in range(50):  # the agent re-pins live; same PID
            if set(parse_cpuset(read_limits(pid).cpuset)) == want:
                break
            subprocess.run(["sleep", "0.1"])
        assert set(parse_cpuset(read_limits(pid).cpuset)) == want
        dy.ok("delete", "pin", "--force")
        for _ in range(50):
            if set(parse_cpuset(read_limits(pid).cpuset)) == all_cores:
                break
            subprocess.run(["sleep", "0.1"])
        assert set(parse_cpuset(read_limits(pid).cpuset)) == all_cores
        assert pid_of(before["container_id"]) == pid
    finally:
        dy.cli("delete", "pin", "--force")
        dy.cli("delete", "pool", "--force")


def test_stop_start_restart_keep_ip_and_mac(dy: Dockyard) -> None:
    first = dy.ok("launch", IMAGE, "cycle", "--json").json()
    try:
        stopped = dy.ok("stop", "cycle", "--json").json()
        assert stopped["state"] == "stopped"
        assert not ping(first["ip"])
        started = dy.ok("start", "cycle", "--json").json()
        assert started["state"] == "running"
        assert (started["ip"], started["mac"]) == (first["ip"], first["mac"])
        assert ping(first["ip"])
        link = dy.ok("exec", "cycle", "--", "ip", "link", "show", "eth0").out
        assert first["mac"] in link
        old_pid = pid_of(first["container_id"])
        restarted = dy.ok("restart", "cycle", "--json").json()
        assert restarted["state"] == "running"
        assert pid_of(first["container_id"]) != old_pid
        assert ping(first["ip"])
        kinds = [e["kind"] for e in dy.ok("events", "cycle", "--json").json()["items"]]
        assert {"created", "stop", "start", "restart"} <= set(kinds)
    finally:
        dy.cli("delete", "cycle", "--force")


def test_delete_leaves_nothing_behind(dy: Dockyard) -> None:
    inst = dy.ok("launch", IMAGE, "gone", "--cores", "1", "--json").json()
    iid = inst["id"]
    assert f"dyh{iid}" in host_links()
    refused = dy.cli("delete", "gone")
    assert refused.code != 0 and "running" in refused.err
    dy.ok("delete", "gone", "--force")
    assert dy.cli("show", "gone").code != 0
    assert f"dyh{iid}" not in host_links()
    assert not [c for c in dy.containers() if c.labels["dockyard.instance"] == iid]
    assert dy.db_query("SELECT * FROM ip_allocations WHERE instance_id=?", iid) == []
    assert dy.db_query("SELECT * FROM core_allocations WHERE instance_id=?", iid) == []
    host = dy.ok("host", "show", "local", "--json").json()
    assert iid not in host["exclusive_cores"].values()
    assert not (dy.home / "agent" / "instances" / iid).exists()


def test_fixed_ip_volume_env_and_logs(dy: Dockyard) -> None:
    net = dy.ok("network", "show", "default", "--json").json()
    ip = net["subnet"].rsplit(".", 1)[0] + ".200"
    inst = dy.ok("launch", IMAGE, "fixed", "--ip", ip, "-v", "dydata-test:/data", "-e",
                 "GREETING=hello world", "--json").json()
    try:
        assert inst["ip"] == ip and ping(ip)
        assert dy.ok("exec", "fixed", "--", "sh", "-c", "echo $GREETING").out.strip() == \
            "hello world"
        dy.ok("exec", "fixed", "--", "sh", "-c", "echo persisted > /data/f")
        dy.ok("restart", "fixed")
        assert dy.ok("exec", "fixed", "--", "cat", "/data/f").out.strip() == "persisted"
        result = dy.cli("exec", "fixed", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
        assert (result.code, result.out, result.err) == (7, "out\n", "err\n")
        dy.ok("exec", "fixed", "--", "sh", "-c", "echo to-console > /proc/1/fd/1")
        assert "to-console" in dy.ok("logs", "fixed").out
    finally:
        dy.cli("delete", "fixed", "--force")
        dy.cli("volume", "delete", "dydata-test")


def test_list_show_json_is_the_api_json(dy: Dockyard) -> None:
    dy.ok("launch", IMAGE, "listed")
    try:
        with dy.api() as api:
            assert dy.ok("list", "--json").json() == api.get("/v1/instances", limit=1000)
            shown = dy.ok("show", "listed", "--json").json()
            assert shown == api.get("/v1/instances/listed")
        for key in ("id", "name", "project", "state", "host", "ip", "mac", "hostname", "image",
                    "network", "container_id", "generation", "limits"):
            assert key in shown
        for key in ("cores", "cpuset", "cpus", "cpu_weight", "memory_bytes", "pids"):
            assert key in shown["limits"]
        assert dy.ok("host", "list", "--json").json()["items"][0]["name"] == "local"
        assert dy.ok("network", "list", "--json").json()["items"][0]["name"] == "default"
    finally:
        dy.cli("delete", "listed", "--force")


def test_instances_of_a_network_resolve_each_other(dy: Dockyard) -> None:
    first = dy.ok("launch", IMAGE, "alpha", "--hostname", "alpha-host", "--json").json()
    try:
        second = dy.ok("launch", IMAGE, "beta", "--json").json()
        hosts = dy.ok("exec", "alpha", "--", "cat", "/etc/hosts").out
        assert f"{second['ip']}\tbeta" in hosts  # a peer that came after alpha started
        assert dy.ok("exec", "alpha", "--", "ping", "-c1", "-W2", "beta").code == 0
        assert dy.ok("exec", "beta", "--", "ping", "-c1", "-W2", "alpha-host").code == 0
        assert first["ip"] in dy.ok("exec", "beta", "--", "cat", "/etc/hosts").out
        dy.ok("delete", "beta", "--force")
        deadline = time.monotonic() + 10
        while "beta" in dy.ok("exec", "alpha", "--", "cat", "/etc/hosts").out:
            assert time.monotonic() < deadline, "beta was not removed from alpha's /etc/hosts"
            time.sleep(0.2)
    finally:
        dy.cli("delete", "beta", "--force")
        dy.cli("delete", "alpha", "--force")
