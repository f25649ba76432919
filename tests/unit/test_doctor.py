"""Host doctor checks: facts in, {name, status, message, fix} out (table-driven)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dockyard.adapters.doctor import BridgeFacts, DiskFacts, DockerFacts, OvsFacts
from dockyard.agent.doctor import (
    HostFacts,
    check_clock,
    check_container_disks,
    check_disk,
    check_forwarding,
    check_live_restore,
    check_lxcfs,
    check_ovs,
    check_pid_max,
    check_pids_controller,
    check_storage,
    run_checks,
)
from dockyard.model.doctor import CheckResult, CheckStatus, DoctorReport

OK, WARN, FAIL = CheckStatus.ok, CheckStatus.warn, CheckStatus.fail

OVERLAY = DockerFacts(driver="overlay2", driver_status={"Backing Filesystem": "extfs"},
                      storage_opts=[], live_restore=True, data_root="/var/lib/docker")
DM_DIRECT = DockerFacts(driver="devicemapper", driver_status={"Pool Name": "docker-thinpool"},
                        storage_opts=["dm.thinpooldev=/dev/mapper/docker-thinpool"],
                        live_restore=True, data_root="/var/lib/docker")
GIB = 2**30
HEALTHY = HostFacts(
    docker=OVERLAY, pid_max=4194304, pids_controller=True, lxcfs_available=True,
    lxcfs_root="/var/lib/dockyard/lxcfs",
    bridges=[BridgeFacts("dyb1", True, True, "DOCKER-USER")],
    ovs=OvsFacts(installed=False, running=False, kernel_module=False), ovs_networks=False,
    disk=DiskFacts("/var/lib/docker", 100 * GIB, 50 * GIB), clock_skew_s=0.1,
    pids_limits=[4096, 4096])


@pytest.mark.parametrize(("docker", "status", "words"), [
    (OVERLAY, OK, ["overlay2"]),
    (replace(DM_DIRECT, storage_opts=["dm.mountopt=nodiscard,discard"]), FAIL,
     ["dm.blkdiscard=false", "seed", "fstrim", "overlay2"]),
    (replace(DM_DIRECT, storage_opts=["dm.blkdiscard=true"]), FAIL, ["dm.blkdiscard=false"]),
    (replace(DM_DIRECT, driver_status={"Data loop file": "/var/lib/docker/devicemapper/data"}),
     FAIL, ["seed"]),  # loopback: blkdiscard is on by default
    (replace(DM_DIRECT, driver_status={"Data loop file": "/x"},
             storage_opts=["dm.blkdiscard=false"]), WARN, ["overlay2"]),
    (DM_DIRECT, WARN, ["overlay2"]),
    (replace(OVERLAY, driver="vfs"), WARN, ["overlay2"]),
])
def test_storage(docker: DockerFacts, status: CheckStatus, words: list[str]) -> None:
    result = check_storage(docker)
    assert result.status == status
    for word in words:
        assert word in result.message + result.fix


@pytest.mark.parametrize(("docker", "mkfs", "status", "words"), [
    (OVERLAY, True, OK, ["loop-mounted ext4"]),
    (OVERLAY, False, WARN, ["--disk fail", "mkfs.ext4", "e2fsprogs"]),
    (DM_DIRECT, True, WARN, ["--disk fail", "overlay2"]),
])
def test_container_disks(docker: DockerFacts, mkfs: bool, status: CheckStatus,
                         words: list[str]) -> None:
    result = check_container_disks(docker, mkfs)
    assert result.status == status
    for word in words:
        assert word in result.message + result.fix


@pytest.mark.parametrize(("pid_max", "limits", "status"), [
    (4194304, [100_000] * 100, OK),  # the kernel's ceiling is always enough
    (32768, [], OK),
    (32768, [4096] * 4, OK),  # 2 × 16384 = 32768
    (32768, [4096] * 5, WARN),
    (65536, [4096] * 5, OK),
    (None, [], WARN),
])
def test_pid_max(pid_max: int | None, limits: list[int], status: CheckStatus) -> None:
    result = check_pid_max(pid_max, limits)
    assert result.status == status
    if status == WARN:
        assert "sysctl -w kernel.pid_max=" in result.fix


@pytest.mark.parametrize(("result", "status", "fix_words"), [
    (check_pids_controller(True), OK, []),
    (check_pids_controller(False), FAIL, ["CONFIG_CGROUP_PIDS", "+pids"]),
    (check_live_restore(OVERLAY), OK, []),
    (check_live_restore(replace(OVERLAY, live_restore=False)), WARN,
     ['"live-restore": true', "/etc/docker/daemon.json"]),
    (check_lxcfs(True, "/r"), OK, []),
    (check_lxcfs(False, "/r"), WARN, ["scripts/lxcfs.sh start /r"]),
    (check_forwarding(BridgeFacts("dyb1", True, True, "DOCKER-USER")), OK, []),
    (check_forwarding(BridgeFacts("dyb1", True, False, "DOCKER-USER")), FAIL,
     ["iptables -w -I DOCKER-USER 1 -i dyb1 -o dyb1 -j ACCEPT"]),
    (check_forwarding(BridgeFacts("dyb1", True, False, "FORWARD")), FAIL,
     ["iptables -w -I FORWARD 1 -i dyb1 -o dyb1 -j ACCEPT"]),
    (check_forwarding(BridgeFacts("dyb1", False, False, "DOCKER-USER")), FAIL, ["resync"]),
    (check_forwarding(BridgeFacts("dyb1", True, False, "FORWARD", error="lock")), FAIL,
     ["iptables"]),
    (check_disk(DiskFacts("/d", 100 * GIB, 10 * GIB)), OK, []),
    (check_disk(DiskFacts("/d", 100 * GIB, 9 * GIB)), WARN, ["docker image prune"]),
    (check_disk(None), WARN, []),
    (check_clock(None), OK, []),
    (check_clock(1.9), OK, []),
    (check_clock(-2.5), WARN, ["NTP"]),
    (check_clock(30.0), WARN, ["chrony"]),
])
def test_checks(result: CheckResult, status: CheckStatus, fix_words: list[str]) -> None:
    assert result.status == status
    assert (result.fix == "") == (status == OK)
    for word in fix_words:
        assert word in result.fix


@pytest.mark.parametrize(("ovs", "wanted", "status", "message"), [
    (OvsFacts(False, False, False), False, OK, "not installed (no OVS network)"),
    (OvsFacts(False, False, False), True, WARN, "not installed"),
    (OvsFacts(True, False, False), False, OK, "ovsdb not answering"),
    (OvsFacts(True, False, False), True, WARN, "ovsdb not answering"),
    (OvsFacts(True, True, False, {"br0": "netdev"}), True, OK, "br0: netdev"),
    (OvsFacts(True, True, False, {"br0": "system"}), True, WARN, "kernel datapath"),
    (OvsFacts(True, True, True, {"br0": "system"}), True, OK, "br0: system"),
])
def test_ovs(ovs: OvsFacts, wanted: bool, status: CheckStatus, message: str) -> None:
    result = check_ovs(ovs, wanted)
    assert result.status == status
    assert message in result.message


def test_healthy_host_passes_everything() -> None:
    results = run_checks(HEALTHY)
    assert [r.status for r in results] == [OK] * len(results)
    assert [r.name for r in results] == [
        "storage driver", "container disk sizes", "live-restore", "kernel.pid_max",
        "pids controller", "lxcfs",
        "forward dyb1", "openvswitch", "disk", "clock"]
    assert not DoctorReport(host="h", checks=results).failed


def test_one_check_per_bridge_and_report_fails() -> None:
    facts = replace(HEALTHY, bridges=[BridgeFacts("dyb1", True, True, "DOCKER-USER"),
                                      BridgeFacts("dyb2", True, False, "DOCKER-USER")])
    results = run_checks(facts)
    statuses = {r.name: r.status for r in results}
    assert statuses["forward dyb1"] == OK and statuses["forward dyb2"] == FAIL
    assert DoctorReport(host="h", checks=results).failed
