"""Host doctor: turn facts about this host into checks that explain what is wrong and the fix.

`examine` gathers the facts through the adapters (read-only) and `run_checks` judges them;
every `check_*` is a pure function of facts, so the judging is table-tested without a host.
Statuses: `fail` = broken now or known to crash the host (the CLI exits non-zero);
`warn` = works but will hurt (density, restarts, space, time); `ok` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dockyard.adapters import doctor as facts_of
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.adapters.doctor import BridgeFacts, DiskFacts, DockerFacts, OvsFacts
from dockyard.adapters.lxcfs import Lxcfs
from dockyard.model.doctor import CheckResult, CheckStatus
from dockyard.model.instance import DEFAULT_PIDS

__all__ = ["HostFacts", "examine", "run_checks"]

PID_MAX_ENOUGH = 4194304  # the kernel's ceiling (PID_MAX_LIMIT on 64-bit): always enough
PID_MAX_FACTOR = 2  # pid_max must cover every instance's pids limit twice (host + headroom)
MIN_FREE_FRACTION = 0.10
MAX_SKEW_S = 2.0

OK, WARN, FAIL = CheckStatus.ok, CheckStatus.warn, CheckStatus.fail


@dataclass(frozen=True)
class HostFacts:
    docker: DockerFacts
    pid_max: int | None
    pids_controller: bool
    lxcfs_available: bool
    lxcfs_root: str
    bridges: list[BridgeFacts]
    ovs: OvsFacts
    ovs_networks: bool  # the cluster has networks in OVS mode (then OVS must work here)
    disk: DiskFacts | None
    clock_skew_s: float | None  # this host minus the server; None: not measured
    pids_limits: list[int] = field(default_factory=list)  # of the instances on this host
    mkfs_ext4: bool = True  # container disks (agent/disks.py) make their filesystems with it


def _dm_discard(docker: DockerFacts) -> bool:
    """devicemapper issues discards: a `discard` mount option, dm.blkdiscard=true, or the
    loopback default (blkdiscard is on by default only with loop files)."""
    opts = [o.replace(" ", "").lower() for o in docker.storage_opts]
    if any(o.startswith("dm.mountopt=") and "discard" in o for o in opts):
        return True
    if "dm.blkdiscard=true" in opts:
        return True
    if "dm.blkdiscard=false" in opts:
        return False
    return "Data loop file" in docker.driver_status


def check_storage(docker: DockerFacts) -> CheckResult:
    name = "storage driver"
    if docker.driver == "overlay2":
        return CheckResult(name=name, status=OK, message="overlay2")
    migrate = ("move to overlay2: \"storage-driver\": \"overlay2\" in /etc/docker/daemon.json "
               "(images must be re-pulled, containers re-created)")
    if docker.driver == "devicemapper" and _dm_discard(docker):
        return CheckResult(
            name=name, status=FAIL,
            message="devicemapper with discard: removing thin devices issues discards that "
                    "crashed host kernels in the seed cluster",
            fix="the seed's workaround: in /etc/docker/daemon.json storage-opts set "
                "\"dm.blkdiscard=false\" and drop discard from dm.mountopt, restart dockerd "
                "(live-restore keeps instances running), trim with a periodic `fstrim` "
                f"instead; better: {migrate}")
    return CheckResult(name=name, status=WARN,
                       message=f"{docker.driver or 'unknown'} (overlay2 is recommended)",
                       fix=migrate)


def check_container_disks(docker: DockerFacts, mkfs_ext4: bool) -> CheckResult:
    """`--disk` on containers (agent/disks.py): the container's overlay2 layer in a
    loop-mounted ext4 of that size; needs overlay2 and mkfs.ext4 (e2fsprogs)."""
    name = "container disk sizes"
    missing = [what for what, there in (("Docker's overlay2 storage driver",
                                          docker.driver == "overlay2"),
                                         ("mkfs.ext4", mkfs_ext4)) if not there]
    if not missing:
        return CheckResult(name=name, status=OK,
                           message="--disk: a loop-mounted ext4 per container layer")
    return CheckResult(name=name, status=WARN,
                       message="unavailable: launches with --disk fail here (no "
                               + " and no ".join(missing) + ")",
                       fix="apt-get install e2fsprogs; storage-driver overlay2 in "
                           "/etc/docker/daemon.json")


def check_live_restore(docker: DockerFacts) -> CheckResult:
    name = "live-restore"
    if docker.live_restore:
        return CheckResult(name=name, status=OK, message="on")
    return CheckResult(
        name=name, status=WARN,
        message="off: restarting or upgrading dockerd stops every instance on this host",
        fix="add \"live-restore\": true to /etc/docker/daemon.json, then "
            "`systemctl reload docker` (or `kill -HUP $(pidof dockerd)`)")


def check_pid_max(pid_max: int | None, pids_limits: list[int]) -> CheckResult:
    name = "kernel.pid_max"
    fix = ("sysctl -w kernel.pid_max=4194304 && "
           "echo kernel.pid_max=4194304 > /etc/sysctl.d/90-dockyard.conf")
    if pid_max is None:
        return CheckResult(name=name, status=WARN, message="unreadable", fix=fix)
    needed = PID_MAX_FACTOR * sum(pids_limits)
    density = f"{len(pids_limits)} instances, pids limits total {sum(pids_limits)}"
    if pid_max >= PID_MAX_ENOUGH or pid_max >= needed:
        return CheckResult(name=name, status=OK, message=f"{pid_max} ({density})")
    return CheckResult(
        name=name, status=WARN,
        message=f"{pid_max} < {needed} = {PID_MAX_FACTOR} × the pids limits of this host's "
                f"instances ({density}): forks will fail host-wide before any limit is hit",
        fix=fix)


def check_pids_controller(present: bool) -> CheckResult:
    name = "pids controller"
    if present:
        return CheckResult(name=name, status=OK, message="present")
    return CheckResult(
        name=name, status=FAIL,
        message="the pids cgroup controller is missing: pids limits are not enforced, "
                "a fork bomb in one instance takes the whole host down",
        fix="boot a kernel with CONFIG_CGROUP_PIDS=y; on cgroup v2 enable it with "
            "`echo +pids > /sys/fs/cgroup/cgroup.subtree_control`")


def check_lxcfs(available: bool, root: str) -> CheckResult:
    name = "lxcfs"
    if available:
        return CheckResult(name=name, status=OK, message=f"running at {root}/fs")
    return CheckResult(
        name=name, status=WARN,
        message=f"not running at {root}/fs: instances see the host's memory, CPUs and uptime",
        fix=f"scripts/lxcfs.sh start {root}")


def check_forwarding(b: BridgeFacts) -> CheckResult:
    name = f"forward {b.bridge}"
    if b.error:
        return CheckResult(name=name, status=FAIL, message=f"iptables failed: {b.error}",
                           fix="check that iptables works: `iptables -w -S FORWARD`")
    if not b.exists:
        return CheckResult(name=name, status=FAIL, message=f"bridge {b.bridge} is missing",
                           fix="the agent re-creates it at its next full resync; if it does "
                               "not, see the agent log")
    if b.forwarding:
        return CheckResult(name=name, status=OK, message=f"-i {b.bridge} -o {b.bridge} "
                                                         f"-j ACCEPT in {b.chain}")
    return CheckResult(
        name=name, status=FAIL,
        message=f"no ACCEPT rule for {b.bridge} in {b.chain}: dockerd's FORWARD policy DROP "
                "drops traffic between instances on this network",
        fix=f"iptables -w -I {b.chain} 1 -i {b.bridge} -o {b.bridge} -j ACCEPT")


def check_ovs(ovs: OvsFacts, wanted: bool) -> CheckResult:
    name = "openvswitch"
    start = "apt-get install openvswitch-switch && /usr/share/openvswitch/scripts/ovs-ctl start"
    status = WARN if wanted else OK
    if not ovs.installed:
        return CheckResult(name=name, status=status,
                           message="not installed" + ("" if wanted else " (no OVS network)"),
                           fix=start if wanted else "")
    if not ovs.running:
        return CheckResult(name=name, status=status, message="installed, ovsdb not answering",
                           fix="/usr/share/openvswitch/scripts/ovs-ctl start" if wanted else "")
    kernel = [b for b, kind in ovs.datapaths.items() if kind == "system"]
    if kernel and not ovs.kernel_module:
        return CheckResult(
            name=name, status=WARN,
            message=f"bridges {', '.join(sorted(kernel))} use the kernel datapath but the "
                    "openvswitch module is not loaded",
            fix="`modprobe openvswitch`, or use the userspace datapath: "
                "`ovs-vsctl set bridge BR datapath_type=netdev`")
    kinds = ", ".join(f"{b}: {k}" for b, k in sorted(ovs.datapaths.items())) or "no bridges"
    return CheckResult(name=name, status=OK, message=f"running ({kinds})")


def check_disk(disk: DiskFacts | None) -> CheckResult:
    name = "disk"
    if disk is None or disk.total_bytes <= 0:
        return CheckResult(name=name, status=WARN, message="data root unreadable",
                           fix="check dockerd's data root (docker info: Docker Root Dir)")
    fraction = disk.free_bytes / disk.total_bytes
    message = f"{fraction:.0%} free on {disk.path} ({disk.free_bytes // 2**30} GiB)"
    if fraction >= MIN_FREE_FRACTION:
        return CheckResult(name=name, status=OK, message=message)
    return CheckResult(name=name, status=WARN, message=message + f", below "
                                                               f"{MIN_FREE_FRACTION:.0%}",
                       fix="`docker image prune -a`, delete unused volumes, or grow the "
                           f"filesystem of {disk.path}")


def check_clock(skew_s: float | None) -> CheckResult:
    name = "clock"
    if skew_s is None:
        return CheckResult(name=name, status=OK, message="not compared (no server time)")
    message = f"{skew_s:+.1f} s against the server"
    if abs(skew_s) <= MAX_SKEW_S:
        return CheckResult(name=name, status=OK, message=message)
    return CheckResult(name=name, status=WARN,
                       message=message + ": heartbeats, events and logs disagree in time",
                       fix="run an NTP client (chrony or systemd-timesyncd) on this host and "
                           "the server")


def run_checks(f: HostFacts) -> list[CheckResult]:
    return [check_storage(f.docker), check_container_disks(f.docker, f.mkfs_ext4),
            check_live_restore(f.docker),
            check_pid_max(f.pid_max, f.pids_limits), check_pids_controller(f.pids_controller),
            check_lxcfs(f.lxcfs_available, f.lxcfs_root),
            *[check_forwarding(b) for b in f.bridges],
            check_ovs(f.ovs, f.ovs_networks), check_disk(f.disk),
            check_clock(f.clock_skew_s)]


def examine(engine: DockerEngine, lxcfs: Lxcfs, cluster: str, bridges: list[str],
            ovs_networks: bool, server_time: datetime | None,
            received_at: datetime) -> list[CheckResult]:
    """Gather this host's facts and judge them. `received_at`: when the request arrived."""
    docker = facts_of.docker_facts(engine)
    limits = [info.resources.pids_limit or DEFAULT_PIDS
              for info in engine.list_owned(cluster)]
    skew = (received_at - server_time).total_seconds() if server_time else None
    return run_checks(HostFacts(
        docker=docker, pid_max=facts_of.pid_max(), pids_controller=facts_of.pids_controller(),
        lxcfs_available=lxcfs.available(), lxcfs_root=str(lxcfs.root),
        bridges=[facts_of.bridge_facts(b) for b in bridges], ovs=facts_of.ovs_facts(),
        ovs_networks=ovs_networks, disk=facts_of.disk_facts(docker.data_root),
        clock_skew_s=skew, pids_limits=limits, mkfs_ext4=facts_of.mkfs_ext4()))
