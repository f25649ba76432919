"""netlink + iptables adapters against real bridges, veths and network namespaces.

Every object is registered with a fixture before it is created and removed in its finalizer,
even when the test fails: bridges `dytst<hex>`, veth host ends `dyv<hex>`, `unshare --net`
processes (killed by pid), iptables rules. Addresses come from 10.249.0.0/24 only.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.adapters import netlink
from dockyard.adapters.iptables import ensure_bridge_forwarding, remove_bridge_forwarding
from dockyard.adapters.netlink import Eth0
from dockyard.errors import BackendError, Conflict
from tests.integration.dockyard_env import require_unrouted
from tests.requirements import missing, requires, requires_root

pytestmark = [
    pytest.mark.integration,
    requires_root(),
    requires(all(shutil.which(tool) for tool in ("ip", "unshare", "nsenter", "ping",
                                                 "iptables")),
             "ip, unshare, nsenter, ping or iptables", "scripts/setup.sh (apt packages)"),
]

GATEWAY = "10.249.0.1"
PREFIX = 24


@pytest.fixture(scope="module", autouse=True)
def unrouted_subnet() -> None:
    """Every address here is in 10.249.0.0/24: refuse to run where it is routed already."""
    require_unrouted("10.249.0.0/24")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def delete_link_if_present(name: str) -> None:
    if sh("ip", "link", "show", "dev", name, check=False).returncode == 0:
        sh("ip", "link", "del", "dev", name, check=False)


def link_json(name: str) -> dict[str, object]:
    data: list[dict[str, object]] = json.loads(sh("ip", "-j", "link", "show", "dev", name).stdout)
    return data[0]


def ping(*prefix: str, target: str) -> bool:
    return sh(*prefix, "ping", "-c1", "-W1", target, check=False).returncode == 0


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Unique test-only link names; every name handed out is deleted at teardown."""
    handed: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}{secrets.token_hex(4)}"[:15]
        handed.append(name)
        return name

    def cleanup() -> None:
        for name in reversed(handed):
            delete_link_if_present(name)

    request.addfinalizer(cleanup)
    return make


@pytest.fixture
def bridge(names: Callable[[str], str], request: pytest.FixtureRequest) -> str:
    name = names("dytst")
    request.addfinalizer(lambda: remove_bridge_forwarding(name))
    netlink.ensure_bridge(name, GATEWAY, PREFIX)
    return name


@pytest.fixture
def spawn_netns() -> Iterator[Callable[[], int]]:
    """Start `unshare --net sleep` processes; return their pid once inside the new netns."""
    procs: list[subprocess.Popen[bytes]] = []
    own_ns = os.stat("/proc/self/ns/net").st_ino

    def spawn() -> int:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "300"],
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until unshare has exec'd sleep in the new netns
            try:
                if os.stat(f"/proc/{proc.pid}/ns/net").st_ino != own_ns:
                    return proc.pid
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        raise AssertionError("unshare --net did not start")

    yield spawn
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def plumb(pid: int, host: str, bridge: str, last_octet: int, peer: str | None = None) -> None:
    netlink.plumb(pid, host, peer or f"{host}p"[:15], bridge, f"02:49:00:00:00:{last_octet:02x}",
                  f"10.249.0.{last_octet}", PREFIX, GATEWAY)


def test_two_instances_talk_through_the_bridge(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    ensure_bridge_forwarding(bridge)  # dockerd's FORWARD policy is DROP
    pid_a, pid_b = spawn_netns(), spawn_netns()
    host_a, host_b = names("dyv"), names("dyv")
    plumb(pid_a, host_a, bridge, 11)
    plumb(pid_b, host_b, bridge, 12)

    assert netlink.instance_eth0(pid_a) == Eth0("02:49:00:00:00:0b", ["10.249.0.11/24"], True)
    assert netlink.instance_eth0(pid_b) == Eth0("02:49:00:00:00:0c", ["10.249.0.12/24"], True)
    for host_end in (host_a, host_b):
        info = link_json(host_end)
        assert info["master"] == bridge
        assert "UP" in info["flags"]  # type: ignore[operator]
    route = sh("nsenter", "-t", str(pid_a), "-n", "ip", "route", "show", "default").stdout
    assert f"via {GATEWAY} dev eth0" in route
    lo = sh("nsenter", "-t", str(pid_a), "-n", "ip", "-br", "link", "show", "lo").stdout
    assert ",UP" in lo

    assert ping(target="10.249.0.11")
    assert ping(target="10.249.0.12")
    assert ping("nsenter", "-t", str(pid_a), "-n", target="10.249.0.12")
    assert ping("nsenter", "-t", str(pid_b), "-n", target=GATEWAY)


def test_plumb_raises_the_ipv4_gso_and_gro_size_of_both_veth_ends(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    """BIG TCP on instance veths (netlink module doc): fewer, larger packets cross the bridge,
    and TCP between two instances still delivers every byte through bridge netfilter."""
    ensure_bridge_forwarding(bridge)
    pid_a, pid_b = spawn_netns(), spawn_netns()
    host_a, host_b = names("dyv"), names("dyv")
    plumb(pid_a, host_a, bridge, 41)
    plumb(pid_b, host_b, bridge, 42)
    gso, gro = netlink.ipv4_gso_sizes(host_a)
    if gso is None:
        missing("IFLA_GSO_IPV4_MAX_SIZE (BIG TCP)", "a kernel >= 6.3 on the test machine")
    assert gso == gro
    assert 65536 < gso <= netlink.BIG_TCP_SIZE
    for host_end, pid in ((host_a, pid_a), (host_b, pid_b)):
        assert netlink.ipv4_gso_sizes(host_end) == (gso, gro)
        assert netlink.ipv4_gso_sizes("eth0", pid) == (gso, gro)

    size = 64 << 20
    server = subprocess.Popen(
        ["nsenter", "-t", str(pid_a), "-n", sys.executable, "-c",
         "import socket; s = socket.create_server(('10.249.0.41', 5301)); c, _ = s.accept()\n"
         "n = 0\nwhile (b := c.recv(1 << 20)): n += len(b)\nprint(n)"],
        stdout=subprocess.PIPE, text=True)
    try:
        sh("nsenter", "-t", str(pid_b), "-n", sys.executable, "-c",
           "import socket, time\nfor _ in range(100):\n"
           "    try: c = socket.create_connection(('10.249.0.41', 5301)); break\n"
           "    except OSError: time.sleep(0.05)\n"
           f"c.sendall(bytes({size})); c.close()")
        out, _ = server.communicate(timeout=30)
    finally:
        server.kill()
        server.wait()
    assert int(out) == size


def test_plumb_is_idempotent_and_replaces_changed_addressing(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    pid, host = spawn_netns(), names("dyv")
    plumb(pid, host, bridge, 21)
    index = link_json(host)["ifindex"]
    plumb(pid, host, bridge, 21)
    assert link_json(host)["ifindex"] == index  # untouched, not re-created
    assert netlink.instance_eth0(pid) == Eth0("02:49:00:00:00:15", ["10.249.0.21/24"], True)

    plumb(pid, host, bridge, 22)  # new mac + ip: the old pair is replaced
    assert netlink.instance_eth0(pid) == Eth0("02:49:00:00:00:16", ["10.249.0.22/24"], True)
    assert ping(target="10.249.0.22")


def test_stale_host_end_is_replaced(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    pid, host = spawn_netns(), names("dyv")
    stale_peer = names("dyv")
    sh("ip", "link", "add", host, "type", "veth", "peer", "name", stale_peer)
    plumb(pid, host, bridge, 31)
    assert not netlink.link_exists(stale_peer)  # went away with its stale host end
    assert link_json(host)["master"] == bridge
    assert ping(target="10.249.0.31")


def test_plumb_into_dead_pid_fails_and_leaves_nothing(
        bridge: str, names: Callable[[str], str]) -> None:
    proc = subprocess.Popen(["unshare", "--net", "true"])
    proc.wait(timeout=10)
    host = names("dyv")
    with pytest.raises(BackendError, match="gone"):
        plumb(proc.pid, host, bridge, 41)
    assert not netlink.link_exists(host)
    assert netlink.instance_eth0(proc.pid) is None


def test_failures_inside_the_netns_leave_no_host_veth(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    pid, host = spawn_netns(), names("dyv")
    nsenter = ("nsenter", "-t", str(pid), "-n")
    sh(*nsenter, "ip", "link", "add", "taken0", "type", "bridge")  # no dummy module here
    with pytest.raises(BackendError, match="File exists"):
        plumb(pid, host, bridge, 51, peer="taken0")  # peer name already used in the netns
    assert not netlink.link_exists(host)

    sh(*nsenter, "ip", "link", "add", "eth0", "type", "bridge")
    with pytest.raises(Conflict, match="eth0"):
        plumb(pid, host, bridge, 51)  # an eth0 we did not make
    assert not netlink.link_exists(host)


def test_refuses_the_agents_own_netns(bridge: str, names: Callable[[str], str]) -> None:
    host = names("dyv")
    with pytest.raises(BackendError, match="host network namespace"):
        plumb(os.getpid(), host, bridge, 61)
    assert not netlink.link_exists(host)


def test_unplumb_and_delete_bridge_clean_everything(
        names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    br, host = names("dytst"), names("dyv")
    netlink.ensure_bridge(br, GATEWAY, PREFIX)
    netlink.ensure_bridge(br, GATEWAY, PREFIX)  # idempotent
    assert sh("ip", "-br", "addr", "show", "dev", br).stdout.count("10.249.0.1/24") == 1
    pid = spawn_netns()
    plumb(pid, host, br, 71)
    netlink.unplumb(host)
    netlink.unplumb(host)
    assert not netlink.link_exists(host)
    assert netlink.instance_eth0(pid) is None  # the peer went with the host end
    netlink.delete_bridge(br)
    netlink.delete_bridge(br)
    assert not netlink.link_exists(br)


def test_names_held_by_other_kinds_are_conflicts(names: Callable[[str], str]) -> None:
    veth, peer, other_bridge = names("dytst"), names("dytst"), names("dytst")
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    sh("ip", "link", "add", other_bridge, "type", "bridge")
    with pytest.raises(Conflict):
        netlink.ensure_bridge(veth, GATEWAY, PREFIX)
    with pytest.raises(Conflict):
        netlink.delete_bridge(veth)
    with pytest.raises(Conflict):
        netlink.unplumb(other_bridge)
    assert netlink.link_exists(veth) and netlink.link_exists(other_bridge)


def test_list_routes_has_the_bridge_subnet_and_no_default(bridge: str) -> None:
    routes = netlink.list_routes()
    assert any(r.dst == "10.249.0.0/24" and r.dev == bridge for r in routes)
    assert all(not r.dst.endswith("/0") for r in routes)


def forwarding_chain() -> str:
    has_docker_user = sh("iptables", "-w", "-S", "DOCKER-USER", check=False).returncode == 0
    return "DOCKER-USER" if has_docker_user else "FORWARD"


def chain_rules(chain: str) -> list[str]:
    return [line for line in sh("iptables", "-w", "-S", chain).stdout.splitlines()
            if line.startswith("-A ")]


def test_bridge_forwarding_rule_is_idempotent(bridge: str) -> None:
    chain = forwarding_chain()
    ours = f"-A {chain} -i {bridge} -o {bridge} -j ACCEPT"
    ensure_bridge_forwarding(bridge)
    ensure_bridge_forwarding(bridge)
    rules = chain_rules(chain)
    assert rules[0] == ours  # first, ahead of DOCKER-USER's final RETURN
    assert rules.count(ours) == 1
    remove_bridge_forwarding(bridge)
    remove_bridge_forwarding(bridge)
    assert ours not in chain_rules(chain)
    assert not any(f"-i {bridge} " in rule for rule in chain_rules("FORWARD"))


def _tracked(a: str, b: str) -> bool:
    """Whether the host's conntrack table holds an ICMP entry from `a` to `b`."""
    lines = Path("/proc/net/nf_conntrack").read_text().splitlines()
    return any(" icmp " in f" {line} " and f"src={a} dst={b} " in line for line in lines)


def test_instance_to_instance_traffic_is_not_tracked_but_traffic_to_the_host_is(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    """The raw-table NOTRACK rule matches bridged packets within the subnet (an earlier
    `--physdev-is-bridged` form never matched in PREROUTING); the gateway stays tracked."""
    if not os.path.exists("/proc/net/nf_conntrack"):
        missing("/proc/net/nf_conntrack", "the nf_conntrack module (dockerd loads it)")
    ensure_bridge_forwarding(bridge, f"{GATEWAY.rsplit('.', 1)[0]}.0/{PREFIX}")
    pid_a, pid_b = spawn_netns(), spawn_netns()
    plumb(pid_a, names("dyv"), bridge, 51)
    plumb(pid_b, names("dyv"), bridge, 52)
    assert ping("nsenter", "-t", str(pid_a), "-n", target="10.249.0.52")
    assert ping("nsenter", "-t", str(pid_a), "-n", target=GATEWAY)
    assert _tracked("10.249.0.51", GATEWAY)  # the check sees tracked traffic
    assert not _tracked("10.249.0.51", "10.249.0.52")


def _arp_listener(ifname: str) -> socket.socket:
    """A packet socket receiving the ARP frames seen on host link `ifname`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.bind((ifname, 0))
    return sock


def _garps(sock: socket.socket, mac: str, ip: str, wait: float, most: int = 1) -> int:
    """How many gratuitous ARPs from (mac, ip) arrive within `wait` seconds (stops at
    `most`)."""
    hw, pa = bytes.fromhex(mac.replace(":", "")), socket.inet_aton(ip)
    deadline = time.monotonic() + wait
    seen = 0
    while seen < most and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        frame = sock.recv(2048)
        if frame[6:12] == hw and frame[22:28] == hw and frame[28:32] == pa == frame[38:42]:
            seen += 1
    return seen


def test_garp_false_leaves_the_announce_to_the_caller(
        bridge: str, names: Callable[[str], str], spawn_netns: Callable[[], int]) -> None:
    """An OVS port is plumbed without a master: its gratuitous ARP must wait until the port is
    on the switch (agent/network.py), or no switch learns the MAC after a move."""
    pid, host = spawn_netns(), names("dyv")
    mac, ip = "02:49:00:00:00:31", "10.249.0.49"
    with _arp_listener(bridge) as sock:
        netlink.plumb(pid, host, f"{host}p"[:15], bridge, mac, ip, PREFIX, GATEWAY,
                      garp=False)
        assert _garps(sock, mac, ip, wait=1.0) == 0  # plumb sent none
        netlink.announce(pid, mac, ip)
        # announce did, and twice more (one lost frame must not leave the MAC unlearnt)
        sent = 1 + len(netlink.GARP_REPEATS)
        assert _garps(sock, mac, ip, wait=4.0, most=sent + 1) == sent
    with _arp_listener(bridge) as sock:  # the default (a bridge port): plumb announces
        netlink.unplumb(host)
        netlink.plumb(pid, host, f"{host}p"[:15], bridge, mac, ip, PREFIX, GATEWAY)
        assert _garps(sock, mac, ip, wait=10.0) == 1
FULL_BRIDGE_SCRIPT = """
import json, subprocess, sys
from pyroute2 import IPRoute
from dockyard.adapters import netlink
from dockyard.errors import BackendError

netlink.ensure_bridge("dytfull", "10.249.0.1", 24)
with IPRoute() as ipr:
    br = ipr.link_lookup(ifname="dytfull")[0]
    for i in range(netlink.BRIDGE_MAX_PORTS - 1):  # every port but one
        ipr.link("add", ifname=f"fa{i}", kind="veth", peer=f"fb{i}")
        ipr.link("set", index=ipr.link_lookup(ifname=f"fa{i}")[0], master=br)
kids = [subprocess.Popen(["unshare", "--net", "sleep", "60"]) for _ in range(2)]
results = []
try:
    for n, kid in enumerate(kids):
        try:
            netlink.plumb(kid.pid, f"dyvfull{n}", f"dypfull{n}", "dytfull",
                          f"02:42:0a:f9:00:{n + 10:02x}", f"10.249.0.{n + 10}", 24, "10.249.0.1")
            results.append("plumbed")
        except BackendError as exc:
            results.append(exc.message)
finally:
    for kid in kids:
        kid.kill()
        kid.wait()
print(json.dumps(results))
"""


def test_a_full_bridge_refuses_the_next_veth_with_a_clear_error() -> None:
    """A Linux bridge takes 1,023 ports; the 1,024th veth gets a message saying so (every
    link lives in a throwaway network namespace of its own: nothing to clean up here)."""
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", FULL_BRIDGE_SCRIPT],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    last, full = json.loads(proc.stdout.splitlines()[-1])
    assert last == "plumbed"  # port 1,023 is still a port
    assert "bridge is full" in full and "1023 ports" in full
