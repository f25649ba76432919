"""The pieces of a simulated host, made with the same tools an operator would use: `ip`,
`nsenter --net` (the root mount namespace stays: dockerd's mounts and /sys/fs/cgroup are the
machine's), dockerd, ovsdb-server and ovs-vswitchd. Every daemon is started detached, output
to a log file, stdin from /dev/null, and waited for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dockyard.adapters import cgroups, ovs
from dockyard.adapters.processes import alive
from dockyard.errors import BackendError

IMAGE = "dockyard/busybox:latest"
DOCKER_BRIDGE = "dyd0"
DOCKER_BRIDGE_CIDR = "10.238.0.1/24"  # the private dockerd's own bridge (instances don't use it)
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise BackendError(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def in_netns(netns: str, *cmd: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", *cmd]


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
    return proc.pid


def wait_for(check: Callable[[], bool], what: str, pid: int | None, log: Path,
             timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise BackendError(f"{what} exited; see {log}")
        try:
            if check():
                return
        except Exception:  # not ready yet, whatever the reason
            pass
        time.sleep(0.2)
    raise BackendError(f"{what} did not become ready in {timeout:.0f}s; see {log}")


def stop(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; only this pid."""
    if pid <= 0 or not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------- links


def make_bridge(name: str, cidr: str | None, netns: str | None = None) -> None:
    pre = ["ip", "-n", netns] if netns else ["ip"]
    if run(*pre, "link", "show", name, check=False).returncode != 0:
        run(*pre, "link", "add", name, "type", "bridge")
    if cidr:
        run(*pre, "addr", "replace", cidr, "dev", name)
    run(*pre, "link", "set", name, "up")


def make_veth_into(root_end: str, netns: str, inner: str, master: str,
                   cidr: str | None = None) -> None:
    """veth `root_end` (root netns, port of `master`) ↔ `inner` (inside `netns`), both up."""
    if run("ip", "link", "show", root_end, check=False).returncode != 0:
        run("ip", "link", "add", root_end, "type", "veth", "peer", "name", inner, "netns",
            netns)
    run("ip", "link", "set", root_end, "master", master, "up")
    if cidr:
        run("ip", "-n", netns, "addr", "replace", cidr, "dev", inner)
    run("ip", "-n", netns, "link", "set", inner, "up")


def delete_link(name: str) -> None:
    run("ip", "link", "del", name, check=False)


# ------------------------------------------------------------------------------- daemons


def start_dockerd(netns: str, root: Path, cgroup_parent: str,
                  criu_bin: str | None = None) -> int:
    """`criu_bin`: a directory whose `criu` goes first on the daemon's PATH (dockerd →
    containerd → runc run `criu` from PATH) and the daemon runs --experimental (`docker
    checkpoint`); "" starts it without; None: as the last start of this daemon did."""
    root.mkdir(parents=True, exist_ok=True)
    remembered = root / "criu-bin"
    if criu_bin is None:
        criu_bin = remembered.read_text().strip() if remembered.exists() else ""
    remembered.write_text(criu_bin)
    # /etc/docker/daemon.json sets live-restore too; the cluster registry (the server's
    # /v2/) is plain HTTP on the management bridge
    config: dict[str, object] = {"insecure-registries": ["10.239.0.0/16"]}
    env: dict[str, str] = {}
    if criu_bin:
        config["experimental"] = True
        env["PATH"] = f"{criu_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    (root / "daemon.json").write_text(json.dumps(config))
    make_bridge(DOCKER_BRIDGE, DOCKER_BRIDGE_CIDR, netns)
    url = f"unix://{root / 'docker.sock'}"
    log = root / "dockerd.log"
    pid = spawn(in_netns(netns, "dockerd", "--config-file", str(root / "daemon.json"),
                         "--data-root", str(root / "data"), "--exec-root",
                         str(root / "exec"), "-H", url, "--pidfile", str(root / "docker.pid"),
                         "--bridge", DOCKER_BRIDGE, "--iptables=false", "--live-restore",
                         "--cgroup-parent", cgroup_parent), log, env)
    wait_for(lambda: run("docker", "-H", url, "info", check=False).returncode == 0,
             f"dockerd of {netns}", pid, log, timeout=120)
    return pid


CRIU_WRAPPER = Path(__file__).resolve().parents[3] / "scripts" / "criu-wrapper"


def criu_bin(home: Path) -> str:
    """HOME/criu-bin/criu → scripts/criu-wrapper (criu 4.2 from a Debian forky tree, built on
    first use); `criu check` must pass, else the error says why."""
    if not CRIU_WRAPPER.exists():
        raise BackendError(f"--criu needs {CRIU_WRAPPER} (a source checkout of Dockyard)")
    run(str(CRIU_WRAPPER), "--build")
    directory = home / "criu-bin"
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "criu"
    if not link.is_symlink():
        link.symlink_to(CRIU_WRAPPER)
    check = run(str(link), "check", check=False)
    if check.returncode != 0:
        raise BackendError(f"--criu: `criu check` fails: {(check.stderr or check.stdout)[-500:]}")
    return str(directory)


def seed_registry(root: Path, tarball: Path, registry: str, token: str) -> None:
    """Put the base image into the cluster's registry through the first host's dockerd (the
    main engine would need the registry marked insecure), logged in with an admin token (the
    credentials live in a throw-away client config), then drop it from that host again:
    every host, the first included, gets images only by pulling from the registry."""
    if not tarball.exists():
        run("docker", "save", "-o", str(tarball), IMAGE)
    ref = f"{registry}/{IMAGE}"
    with tempfile.TemporaryDirectory(prefix="dy-seed-") as config:
        docker = ("docker", "--config", config, "-H", f"unix://{root / 'docker.sock'}")
        run(*docker, "load", "-i", str(tarball))
        run(*docker, "tag", IMAGE, ref)
        login = subprocess.run([*docker, "login", "-u", "dockyard", "--password-stdin",
                                registry], input=token, capture_output=True, text=True,
                               timeout=60, check=False)
        if login.returncode != 0:
            raise BackendError(f"docker login {registry}: {login.stderr.strip()}")
        run(*docker, "push", ref)
        run(*docker, "rmi", ref, IMAGE)


def start_ovs(netns: str, root: Path) -> tuple[int, int]:
    """ovsdb-server + ovs-vswitchd of one simulated host, inside its netns, own run dir."""
    root.mkdir(parents=True, exist_ok=True)
    env = {"OVS_RUNDIR": str(root), "OVS_LOGDIR": str(root), "OVS_DBDIR": str(root)}
    db = root / "conf.db"
    if not db.exists():
        ovs.create_db(str(db), OVS_SCHEMA)
    sock = root / "db.sock"
    dbpid = spawn(in_netns(netns, "ovsdb-server", str(db), f"--remote=punix:{sock}",
                           f"--unixctl={root / 'ovsdb-server.ctl'}"), root / "ovsdb.log", env)
    wait_for(sock.exists, f"ovsdb-server of {netns}", dbpid, root / "ovsdb.log")
    ovs.init_db(f"unix:{sock}")
    swpid = spawn(in_netns(netns, "ovs-vswitchd", f"unix:{sock}",
                           f"--unixctl={root / 'ovs-vswitchd.ctl'}"), root / "vswitchd.log",
                  env)
    wait_for(lambda: ovs.vswitchd_ready(str(root / "ovs-vswitchd.ctl")),
             f"ovs-vswitchd of {netns}", swpid, root / "vswitchd.log")
    return dbpid, swpid


def remove_containers(root: Path) -> None:
    url = f"unix://{root / 'docker.sock'}"
    ids = run("docker", "-H", url, "ps", "-aq", check=False).stdout.split()
    if ids:
        run("docker", "-H", url, "rm", "-f", *ids, check=False)


def remove_cgroups(parent: str) -> None:
    cgroups.remove_tree(parent)
