"""Live migration across the kinds of instance people run, on one criu dev-cluster: each case
either moves live (the same processes count on, same IP/MAC, limits applied on the target as
read from its cgroups and tc, the /proc views from the target's lxcfs) or is refused by the
preflight with a named reason; a "possible" is always followed by a working move.

The dimensions are combined, not multiplied (the module's budget is a few minutes):

    case         image    lxcfs  network  volume  limits                               expect
    full         busybox  on     bridge   yes     cores 1, 128M, write 10M/s, 20mbit   live
    plain        busybox  off    ovs      -       -                                    live
    machine      machine  on     ovs      yes     256M, cpus 1                         live:
                 sshd listens (TCP) and answers new logins after the move, the same sshd
    machine2     machine  off    bridge   -       -                                    live:
                 the same sshd answers new logins, the /proc views are the kernel's
    ssh session  machine  on     ovs      yes     as above (after the move above)      refused:
                 a logged-in OpenSSH session (the host's ssh client, from host3's pinger)
                 -> tcp_established, and nothing else; --fallback moves it cold (the session
                 is dropped, as the preflight said)

The machine case needs a criu that dumps TCP/UDP sockets on this kernel (criu 4.2 through
scripts/criu-wrapper; criu 4.1 cannot on kernels >= 6.16: scripts/criu/README.md). CRIU could
carry an established TCP connection (--tcp-established, TCP repair), but `docker checkpoint`
never asks for it: the preflight names the session instead.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.model import ids
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster
from tests.e2e.criu_cluster import (
    COUNTER,
    assert_counting_on,
    background,
    cgroup_file,
    container_pid,
    counts,
    host_netns,
    sh,
    show,
)

BRIDGE, OVS = "lmx", "lmxovs"
MACHINE = "dockyard/machine:bookworm"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def matrix(criu: DevCluster) -> Iterator[DevCluster]:
    """The package's criu cluster with this module's two networks and pingers; the module's
    instances are deleted after it (the next module's cases run on a quiet cluster)."""
    dc = criu
    dc.ok("network", "create", BRIDGE, "--subnet", "10.241.60.0/24")
    dc.ok("network", "create", OVS, "--subnet", "10.241.61.0/24", "--mode", "ovs")
    try:
        for net, name in ((BRIDGE, "mxping"), (OVS, "mxpingo")):
            dc.ok("launch", "dockyard/busybox", name, "--host", "host3", "--network", net,
                  "--no-lxcfs")
        yield dc
    finally:
        for item in hostctl.listed(dc.ok("list", "--json")):
            if str(item["name"]).startswith("mx"):
                dc.cli("delete", str(item["name"]), "--force")


@pytest.fixture(scope="module")
def machine_ref(matrix: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The machine image in the cluster's registry (from the main engine's, built by
    scripts/setup.sh or the integration fixture)."""
    have = subprocess.run(["docker", "image", "inspect", MACHINE], capture_output=True)
    if have.returncode != 0:
        pytest.skip(f"{MACHINE} is not built on this machine (adapters/machine_image.py)")
    archive = tmp_path_factory.mktemp("machine") / "machine.tar"
    subprocess.run(["docker", "save", "-o", str(archive), MACHINE], check=True, timeout=300)
    proc = matrix.cli("image", "import", str(archive), MACHINE, "--host", "host1",
                      timeout=600)
    archive.unlink()
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return MACHINE


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, timeout=30)
    return key.with_suffix(".pub")


def _move_live(dc: DevCluster, name: str, to: str) -> dict[str, object]:
    """The preflight says possible, then the move works (never one without the other)."""
    check = dc.cli("migrate", name, "--live", "--check", "--to", to, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True, check.stdout
    moved = dc.cli("migrate", name, "--live", "--to", to, "--json")
    assert moved.returncode == 0, f"preflight said possible, the move failed: " \
        f"{moved.stdout}{moved.stderr}{_criu_errors(moved.stderr)}"
    result: dict[str, object] = json.loads(moved.stdout)
    assert result["mode"] == "live" and result["target"] == to
    return result


def _criu_errors(message: str) -> str:
    """The error lines of the CRIU log a failed checkpoint names (the container runs on, so
    its bundle and the log are still there)."""
    found = re.search(r"path= (\S+\.log)", message)
    if not found or not Path(found.group(1)).exists():
        return ""
    lines = Path(found.group(1)).read_text(errors="replace").splitlines()
    return "\n" + "\n".join(line for line in lines if "Error" in line or "rror (" in line)


def _moved(dc: DevCluster, name: str, before: dict[str, object], to: str) -> int:
    """Same identity on `to`, the counter going on; returns the restored container's pid."""
    after = show(dc, name)
    assert after["host"] == to and after["state"] == "running"
    assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
    eth0 = sh(dc, name, "cat /sys/class/net/eth0/address")
    assert eth0.strip().lower() == str(before["mac"]).lower()
    assert_counting_on(dc, name, len(counts(dc, name)) + 5)
    return container_pid(dc, to, str(after["container_id"]))


def _reaches(dc: DevCluster, pinger: str, ip: object) -> None:
    assert dc.reaches(pinger, str(ip)), f"{pinger} does not reach {ip}"


def test_busybox_lxcfs_bridge_volume_limits(matrix: DevCluster) -> None:
    dc = matrix
    dc.ok("launch", "dockyard/busybox", "mxfull", "--host", "host1", "--network", BRIDGE,
          "-v", "mxdata:/data", "--cores", "1", "--memory", "128M", "--write-bps", "10M",
          "--ingress", "20mbit", "--egress", "20mbit")
    before = show(dc, "mxfull")
    sh(dc, "mxfull", "echo kept > /data/marker")
    background(dc, "mxfull", COUNTER)
    assert_counting_on(dc, "mxfull", 3)
    _move_live(dc, "mxfull", "host2")
    pid = _moved(dc, "mxfull", before, "host2")
    after = show(dc, "mxfull")
    limits = after["limits"]
    assert isinstance(limits, dict)
    # limits from the target's cgroups and tc
    assert cgroup_file(pid, "cpuset", "cpuset.cpus") == str(limits["cpuset"])
    assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes")) == 128 * MIB
    assert str(10 * MIB) in cgroup_file(pid, "blkio", "blkio.throttle.write_bps_device")
    netns = host_netns(dc, "host2")
    veth = ids.host_veth_name(str(after["id"]))
    outside = subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "show", "dev",
                              veth], capture_output=True, text=True, timeout=30).stdout
    inside = subprocess.run(["nsenter", "-t", str(pid), "-n", "tc", "qdisc", "show", "dev",
                             "eth0"], capture_output=True, text=True, timeout=30).stdout
    assert "tbf" in outside and "rate 20Mbit" in outside, outside
    assert "tbf" in inside and "rate 20Mbit" in inside, inside
    # the instance's own /proc views, from host2's lxcfs; the volume's data came along
    assert sh(dc, "mxfull", "head -1 /proc/meminfo").split()[1] == str(128 * 1024)
    online = sh(dc, "mxfull", "cat /sys/devices/system/cpu/online").strip()
    assert online.isdigit(), online  # one CPU (lxcfs: the cpuset of --cores 1), not "0-1"
    assert sh(dc, "mxfull", "cat /data/marker").strip() == "kept"
    _reaches(dc, "mxping", after["ip"])


def test_busybox_no_lxcfs_ovs(matrix: DevCluster) -> None:
    dc = matrix
    dc.ok("launch", "dockyard/busybox", "mxplain", "--host", "host1", "--network", OVS,
          "--no-lxcfs")
    before = show(dc, "mxplain")
    _reaches(dc, "mxpingo", before["ip"])  # the pinger's ARP entry: fresh across the move
    background(dc, "mxplain", COUNTER)
    assert_counting_on(dc, "mxplain", 3)
    _move_live(dc, "mxplain", "host2")
    _moved(dc, "mxplain", before, "host2")
    assert "fuse.lxcfs" not in sh(dc, "mxplain", "cat /proc/self/mountinfo")
    _reaches(dc, "mxpingo", before["ip"])


class Ssh:
    """The host's OpenSSH client inside the pinger's netns (host3), logging in as root with the
    key the machine was launched with."""

    def __init__(self, dc: DevCluster, key: Path, ip: object, pinger_name: str = "mxpingo"
                 ) -> None:
        pinger = show(dc, pinger_name)
        pid = container_pid(dc, "host3", str(pinger["container_id"]))
        self.base = ["nsenter", "-t", str(pid), "-n", "ssh", "-i", str(key), "-o",
                     "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                     "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                     # a session to a stopped sshd ends (reset by the new container's kernel)
                     "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3",
                     "-o", "LogLevel=ERROR", f"root@{ip}"]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, command], capture_output=True, text=True,
                              timeout=30)

    def answers(self, name: str) -> bool:
        """A new connection logs in and runs a command (sshd answers)."""
        done = self.run("hostname")
        return done.returncode == 0 and done.stdout.strip() == name

    def session(self) -> subprocess.Popen[str]:
        """An established login session, held open by a remote `cat` until stdin closes."""
        return subprocess.Popen([*self.base, "echo ready; exec cat"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _no_connected_tcp(dc: DevCluster, name: str) -> bool:
    """The sshd children of finished logins are gone (no connected TCP socket inside)."""
    return sh(dc, name, "ss -Htn state connected exclude time-wait | wc -l").strip() == "0"


def _fallback(dc: DevCluster, name: str, to: str, codes: set[str]) -> None:
    """The preflight names exactly `codes`; --fallback then moves it cold, saying why."""
    check = dc.cli("migrate", name, "--live", "--check", "--to", to, "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 1 and report["ok"] is False, check.stdout + check.stderr
    assert {f["code"] for f in report["failures"]} == codes, report["failures"]
    cold = dc.cli("migrate", name, "--live", "--fallback", "--to", to, "--json")
    assert cold.returncode == 0, cold.stdout + cold.stderr
    result = json.loads(cold.stdout)
    assert result["mode"] == "cold" and result["fallback"] is True
    assert {r["code"] for r in result["reasons"]} == codes


def test_machine_image_moves_live_and_an_ssh_session_is_named(
        matrix: DevCluster, machine_ref: str, ssh_key: Path) -> None:
    dc = matrix
    dc.ok("launch", machine_ref, "mxmachine", "--host", "host1", "--network", OVS,
          "--memory", "256M", "--cpus", "1", "-v", "mxhome:/srv", "--ssh-key", str(ssh_key))
    before = show(dc, "mxmachine")
    ssh = Ssh(dc, ssh_key.with_suffix(""), before["ip"])
    hostctl.until(lambda: ssh.answers("mxmachine"), "sshd answers with the key", timeout=60)
    sshd = sh(dc, "mxmachine", "pgrep -o -x sshd").strip()
    background(dc, "mxmachine", COUNTER)
    assert_counting_on(dc, "mxmachine", 3)
    hostctl.until(lambda: _no_connected_tcp(dc, "mxmachine"), "the logins closed", timeout=30)
    listening = sh(dc, "mxmachine", "ss -Htln").split("\n")
    assert any(":22 " in line for line in listening), listening  # inet sockets to dump
    _move_live(dc, "mxmachine", "host2")
    _moved(dc, "mxmachine", before, "host2")
    # the same sshd (supervisord's child), answering new logins on host2
    assert sh(dc, "mxmachine", "pgrep -o -x sshd").strip() == sshd
    # the first login right after the move answers: the pinger's ARP entry (from the logins
    # before) is still fresh, so only the gratuitous ARP sent once eth0 is an OVS port tells
    # the switches the MAC is on host2 now (sent before add-port, it was lost: no answer
    # until the pinger's ARP entry went stale, 20-50 s later)
    assert ssh.answers("mxmachine"), "the first SSH login after the move did not answer"
    # procps free/nproc inside see the instance's own limits (host2's lxcfs)
    total = int(sh(dc, "mxmachine", "free -b | awk '/^Mem:/ {print $2}'"))
    assert total == 256 * MIB, total
    assert sh(dc, "mxmachine", "nproc").strip() == "1"  # --cpus 1 (lxcfs --enable-cfs)
    # an established SSH session: named by the preflight, and --fallback moves it cold
    hostctl.until(lambda: _no_connected_tcp(dc, "mxmachine"), "the logins closed", timeout=30)
    session = ssh.session()
    try:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "ready", session.stderr
        check = dc.cli("migrate", "mxmachine", "--live", "--check", "--to", "host1", "--json")
        named = {f["code"]: f["message"] for f in json.loads(check.stdout)["failures"]}
        assert f"{before['ip']}:22->" in named.get("tcp_established", ""), named
        _fallback(dc, "mxmachine", "host1", {"tcp_established"})
        # the session ended with the source's container (cold: new processes)
        assert session.wait(timeout=60) != 0
    finally:
        if session.poll() is None:
            session.kill()
        session.communicate(timeout=10)
    after = show(dc, "mxmachine")
    assert after["host"] == "host1" and after["state"] == "running"
    assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
    hostctl.until(lambda: ssh.answers("mxmachine"), "sshd answers after the cold move",
                  timeout=60)


def test_machine_image_without_lxcfs_on_a_bridge_moves_live(
        matrix: DevCluster, machine_ref: str, ssh_key: Path) -> None:
    dc = matrix
    dc.ok("launch", machine_ref, "mxmachine2", "--host", "host1", "--network", BRIDGE,
          "--no-lxcfs", "--ssh-key", str(ssh_key))
    before = show(dc, "mxmachine2")
    ssh = Ssh(dc, ssh_key.with_suffix(""), before["ip"], "mxping")
    hostctl.until(lambda: ssh.answers("mxmachine2"), "sshd answers with the key", timeout=60)
    sshd = sh(dc, "mxmachine2", "pgrep -o -x sshd").strip()
    background(dc, "mxmachine2", COUNTER)
    assert_counting_on(dc, "mxmachine2", 3)
    hostctl.until(lambda: _no_connected_tcp(dc, "mxmachine2"), "the logins closed", timeout=30)
    _move_live(dc, "mxmachine2", "host2")
    _moved(dc, "mxmachine2", before, "host2")
    assert sh(dc, "mxmachine2", "pgrep -o -x sshd").strip() == sshd
    assert ssh.answers("mxmachine2")
    assert "fuse.lxcfs" not in sh(dc, "mxmachine2", "cat /proc/self/mountinfo")
    _reaches(dc, "mxping", before["ip"])
