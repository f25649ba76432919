"""Facts about this host that the doctor's checks judge (see `agent/doctor.py`).

Read-only: nothing here changes the host. Each reader answers with plain values; a fact that
cannot be read is reported as None / False with the reason, never raised, so one broken
subsystem does not hide the other checks (except dockerd itself: `docker_facts` raises
BackendError/TemporaryError like every Docker call).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.adapters import iptables, netlink
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.errors import DockyardError

__all__ = ["BridgeFacts", "DiskFacts", "DockerFacts", "OvsFacts", "bridge_facts", "disk_facts",
           "docker_facts", "mkfs_ext4", "ovs_facts", "pid_max", "pids_controller"]

DAEMON_JSON = "/etc/docker/daemon.json"
_PID_MAX = "/proc/sys/kernel/pid_max"
_PROC_CGROUPS = "/proc/cgroups"
_CGROUP2_CONTROLLERS = "/sys/fs/cgroup/cgroup.controllers"
_OVS_MODULE = "/sys/module/openvswitch"
_OVS_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DockerFacts:
    driver: str
    driver_status: dict[str, str]
    storage_opts: list[str]  # from daemon.json "storage-opts" (docker info does not list them)
    live_restore: bool
    data_root: str


@dataclass(frozen=True)
class BridgeFacts:
    bridge: str
    exists: bool
    forwarding: bool  # the `-i BR -o BR -j ACCEPT` rule is in `chain`
    chain: str
    error: str = ""  # iptables itself failed; forwarding is then unknown (False)


@dataclass(frozen=True)
class OvsFacts:
    installed: bool  # ovs-vsctl is on PATH
    running: bool  # `ovs-vsctl show` answered (ovsdb-server up)
    kernel_module: bool  # the kernel datapath (module openvswitch) is loaded
    datapaths: dict[str, str] = field(default_factory=dict)  # bridge -> datapath_type


@dataclass(frozen=True)
class DiskFacts:
    path: str
    total_bytes: int
    free_bytes: int  # available to unprivileged users (f_bavail)


def _storage_opts(path: str = DAEMON_JSON) -> list[str]:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    opts = config.get("storage-opts") if isinstance(config, dict) else None
    return [str(o) for o in opts] if isinstance(opts, list) else []


def docker_facts(engine: DockerEngine) -> DockerFacts:
    info = engine.info()
    status = {str(pair[0]): str(pair[1]) for pair in info.get("DriverStatus") or []
              if isinstance(pair, list | tuple) and len(pair) == 2}
    return DockerFacts(driver=str(info.get("Driver", "")), driver_status=status,
                       storage_opts=_storage_opts(),
                       live_restore=bool(info.get("LiveRestoreEnabled", False)),
                       data_root=str(info.get("DockerRootDir", "/var/lib/docker")))


def mkfs_ext4() -> bool:
    """Container disks can be made (agent/disks.py)."""
    return shutil.which("mkfs.ext4") is not None


def pid_max() -> int | None:
    try:
        return int(Path(_PID_MAX).read_text().strip())
    except (OSError, ValueError):
        return None


def pids_controller() -> bool:
    """The pids cgroup controller is usable: listed by cgroup v2's root, else enabled in v1."""
    try:
        return "pids" in Path(_CGROUP2_CONTROLLERS).read_text().split()
    except OSError:
        pass
    try:
        lines = Path(_PROC_CGROUPS).read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "pids":
            return fields[3] == "1"
    return False


def bridge_facts(bridge: str) -> BridgeFacts:
    exists = netlink.link_exists(bridge)
    try:
        chain = iptables.forwarding_chain()
        return BridgeFacts(bridge, exists, iptables.has_bridge_forwarding(bridge), chain)
    except DockyardError as exc:
        return BridgeFacts(bridge, exists, False, "DOCKER-USER", error=exc.message)


def _ovs_vsctl(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["ovs-vsctl", f"--timeout={int(_OVS_TIMEOUT_S)}", *args],
                              capture_output=True, text=True, timeout=_OVS_TIMEOUT_S + 2,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def ovs_facts() -> OvsFacts:
    module = os.path.isdir(_OVS_MODULE)
    if shutil.which("ovs-vsctl") is None:
        return OvsFacts(installed=False, running=False, kernel_module=module)
    show = _ovs_vsctl("show")
    if show is None or show.returncode != 0:
        return OvsFacts(installed=True, running=False, kernel_module=module)
    listing = _ovs_vsctl("--format=csv", "--data=bare", "--no-headings",
                         "--columns=name,datapath_type", "list", "bridge")
    datapaths: dict[str, str] = {}
    if listing is not None and listing.returncode == 0:
        for line in listing.stdout.splitlines():
            name, _, kind = line.partition(",")
            if name:
                datapaths[name.strip('"')] = kind.strip('"') or "system"
    return OvsFacts(installed=True, running=True, kernel_module=module, datapaths=datapaths)


def disk_facts(path: str) -> DiskFacts | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return DiskFacts(path, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
