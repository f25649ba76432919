"""tc adapter against real namespaces: limits measured with iperf3 through a Linux bridge.

Topology (all inside this machine, 10.248.0.0/24 only): bridge `dytc<hex>` (10.248.0.1), an
"instance" netns (10.248.0.2, host end `dytci<hex>`) and a "peer" netns (10.248.0.3, host end
`dytcp<hex>`), both `unshare --net sleep` processes plumbed with `netlink.plumb`. Everything
is removed in finalizers, even when a test fails. The module holds an exclusive flock on
`NETWORK_TEST_LOCK` for its whole run, so throughput is never measured while another test run
on this machine that takes the same lock is shaping or flooding its own bridges.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dockyard.adapters import netlink, tc
from dockyard.adapters.iptables import ensure_bridge_forwarding, remove_bridge_forwarding
from dockyard.errors import BackendError
from tests.integration.dockyard_env import require_unrouted
from tests.integration.iperf import received_bps
from tests.requirements import requires, requires_root

pytestmark = [
    pytest.mark.integration,
    requires_root(),
    requires(all(shutil.which(tool) for tool in ("ip", "tc", "unshare", "nsenter",
                                                 "iptables", "iperf3")),
             "ip, tc, unshare, nsenter, iptables or iperf3", "scripts/setup.sh (apt packages)"),
]

NETWORK_TEST_LOCK = "/tmp/dockyard-network-tests.lock"
GATEWAY = "10.248.0.1"
INSTANCE_IP = "10.248.0.2"
PEER_IP = "10.248.0.3"
PREFIX = 24
LIMIT = 50_000_000  # 50 mbit


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture(scope="module", autouse=True)
def network_lock() -> Iterator[None]:
    with open(NETWORK_TEST_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        require_unrouted("10.248.0.0/24")  # every address here is in it
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Topo:
    bridge: str
    instance_pid: int
    instance_host: str  # host end of the instance's veth
    peer_pid: int


def spawn_netns(procs: list[subprocess.Popen[bytes]]) -> int:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"], stdin=subprocess.DEVNULL)
    procs.append(proc)
    own_ns = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until unshare has exec'd sleep in the new netns
        try:
            if os.stat(f"/proc/{proc.pid}/ns/net").st_ino != own_ns:
                return proc.pid
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise AssertionError("unshare --net did not start")


@pytest.fixture
def topo() -> Iterator[Topo]:
    tag = secrets.token_hex(4)
    bridge, instance_host, peer_host = f"dytc{tag}", f"dytci{tag}", f"dytcp{tag}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        netlink.ensure_bridge(bridge, GATEWAY, PREFIX)
        ensure_bridge_forwarding(bridge)  # dockerd's FORWARD policy is DROP
        instance_pid, peer_pid = spawn_netns(procs), spawn_netns(procs)
        netlink.plumb(instance_pid, instance_host, f"{instance_host}x", bridge,
                      "02:48:00:00:00:02", INSTANCE_IP, PREFIX, GATEWAY)
        netlink.plumb(peer_pid, peer_host, f"{peer_host}x", bridge,
                      "02:48:00:00:00:03", PEER_IP, PREFIX, GATEWAY)
        yield Topo(bridge, instance_pid, instance_host, peer_pid)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        for name in (instance_host, peer_host, bridge):
            if sh("ip", "link", "show", "dev", name, check=False).returncode == 0:
                sh("ip", "link", "del", "dev", name, check=False)
        remove_bridge_forwarding(bridge)


def iperf(t: Topo, *, to_instance: bool, seconds: int = 3) -> float:
    """Received bits/s between peer and instance (the iperf3 server runs in the instance;
    `to_instance=False` reverses the flow)."""
    return received_bps(t.instance_pid, INSTANCE_IP, t.peer_pid, reverse=not to_instance,
                        seconds=seconds)


def root_qdisc(*prefix: str, dev: str) -> str:
    return sh(*prefix, "tc", "qdisc", "show", "dev", dev, "root").stdout


def test_limits_hold_both_ways_and_removal_restores_full_speed(topo: Topo) -> None:
    ns = ("nsenter", "-t", str(topo.instance_pid), "-n")
    tc.set_ingress(topo.instance_host, LIMIT)
    tc.set_egress(topo.instance_pid, LIMIT)
    assert tc.read_ingress(topo.instance_host) == LIMIT
    assert tc.read_egress(topo.instance_pid) == LIMIT
    assert "tbf d7a: root" in root_qdisc(dev=topo.instance_host)
    assert "rate 50Mbit burst 62500b" in root_qdisc(*ns, dev="eth0")

    to_instance = iperf(topo, to_instance=True) / LIMIT
    from_instance = iperf(topo, to_instance=False) / LIMIT
    print(f"limited: to instance {to_instance:.3f}, from instance {from_instance:.3f}")
    assert 0.80 <= to_instance <= 1.10
    assert 0.80 <= from_instance <= 1.10

    tc.set_ingress(topo.instance_host, None)
    tc.set_egress(topo.instance_pid, None)
    assert tc.read_ingress(topo.instance_host) is None
    assert tc.read_egress(topo.instance_pid) is None
    assert "d7a:" not in root_qdisc(dev=topo.instance_host)
    assert "d7a:" not in root_qdisc(*ns, dev="eth0")

    # a rate ten times the limit's shows within a second (3 s measure a limit's accuracy)
    to_instance = iperf(topo, to_instance=True, seconds=1) / LIMIT
    from_instance = iperf(topo, to_instance=False, seconds=1) / LIMIT
    print(f"unlimited: to instance {to_instance:.1f}x, from instance {from_instance:.1f}x")
    assert to_instance > 5
    assert from_instance > 5


def test_set_is_idempotent_and_changes_in_place(
        topo: Topo, monkeypatch: pytest.MonkeyPatch) -> None:
    tc.set_ingress(topo.instance_host, 50_000_007)  # kept as whole bytes/s
    tc.set_egress(topo.instance_pid, 20_000_000)
    assert tc.read_ingress(topo.instance_host) == 50_000_000
    assert tc.read_egress(topo.instance_pid) == 20_000_000

    def no_writes(*args: object) -> None:
        raise AssertionError("an unchanged rate must not be written again")

    with monkeypatch.context() as patch:
        patch.setattr(tc, "_apply", no_writes)
        patch.setattr(tc, "_delete", no_writes)
        tc.set_ingress(topo.instance_host, 50_000_000)
        tc.set_ingress(topo.instance_host, 50_000_007)
        tc.set_egress(topo.instance_pid, 20_000_000)
        # removing what is not there writes nothing either
        tc.set_egress(topo.peer_pid, None)

    tc.set_ingress(topo.instance_host, 80_000_000)
    tc.set_egress(topo.instance_pid, 100_000_000)
    assert tc.read_ingress(topo.instance_host) == 80_000_000
    assert tc.read_egress(topo.instance_pid) == 100_000_000
    assert root_qdisc(dev=topo.instance_host).count("qdisc") == 1

    tc.set_ingress(topo.instance_host, None)
    tc.set_ingress(topo.instance_host, None)
    assert tc.read_ingress(topo.instance_host) is None


def test_foreign_root_qdisc_is_replaced_but_never_removed(topo: Topo) -> None:
    host = topo.instance_host
    sh("tc", "qdisc", "replace", "dev", host, "root", "handle", "1:", "tbf", "rate", "1mbit",
       "burst", "10kb", "latency", "50ms")
    assert tc.read_ingress(host) is None  # not ours
    tc.set_ingress(host, None)
    assert "tbf 1: root" in root_qdisc(dev=host)
    tc.set_ingress(host, LIMIT)
    assert "tbf d7a: root" in root_qdisc(dev=host)
    assert tc.read_ingress(host) == LIMIT


def test_limits_go_away_with_the_instance_veth(topo: Topo) -> None:
    tc.set_ingress(topo.instance_host, LIMIT)
    tc.set_egress(topo.instance_pid, LIMIT)
    netlink.unplumb(topo.instance_host)
    assert not netlink.link_exists(topo.instance_host)
    with pytest.raises(BackendError, match="no interface eth0"):
        tc.read_egress(topo.instance_pid)


def test_errors(topo: Topo) -> None:
    missing = f"dytcm{secrets.token_hex(4)}"
    with pytest.raises(BackendError, match=f"no interface {missing} on the host"):
        tc.set_ingress(missing, LIMIT)
    with pytest.raises(BackendError, match=f"no interface {missing}"):
        tc.set_ingress(missing, None)
    with pytest.raises(BackendError, match=f"no interface {missing}"):
        tc.read_ingress(missing)
    with pytest.raises(BackendError, match="no interface nope0 in the netns of pid"):
        tc.set_egress(topo.instance_pid, LIMIT, ifname="nope0")
    with pytest.raises(BackendError, match="no interface nope0"):
        tc.read_egress(topo.instance_pid, ifname="nope0")
    with pytest.raises(BackendError, match="rate"):
        tc.set_ingress(topo.instance_host, 0)

    # the agent's own netns is never treated as an instance's (it would limit the host)
    with pytest.raises(BackendError, match="host network namespace"):
        tc.set_egress(os.getpid(), LIMIT)

    dead = subprocess.Popen(["unshare", "--net", "true"])
    dead.wait(timeout=10)
    with pytest.raises(BackendError, match="gone"):
        tc.set_egress(dead.pid, LIMIT)
    with pytest.raises(BackendError, match="gone"):
        tc.read_egress(dead.pid)
    assert tc.read_ingress(topo.instance_host) is None  # nothing was set by the failures
