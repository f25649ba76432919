"""`network create --nat`: traffic leaving the host is masqueraded. Proven inside this machine:
a peer namespace with no route back to the instance subnet answers only when the instance's
packets arrive from the host's own address."""

from __future__ import annotations

import ipaddress
import random
import subprocess
import time
from collections.abc import Iterator

import pytest

from dockyard.adapters.iptables import nat_subnet_of
from tests.integration.dockyard_env import IMAGE, Dockyard, free_subnet


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def peer() -> Iterator[str]:
    """A namespace on a /30 link to the host, with no default route (no way back)."""
    n = random.randint(1, 99999)
    ns, host_end, peer_end = f"dynatp{n}", f"dynath{n}", f"dynatq{n}"
    link = ipaddress.ip_network(free_subnet("10.248.0.0/16", 30))
    host_ip, peer_ip = (str(link.network_address + i) for i in (1, 2))
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", peer_end)
        sh("ip", "link", "set", peer_end, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_end)
        sh("ip", "link", "set", host_end, "up")
        sh("ip", "-n", ns, "addr", "add", f"{peer_ip}/30", "dev", peer_end)
        sh("ip", "-n", ns, "link", "set", peer_end, "up")
        yield peer_ip
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_nat_network_reaches_what_routing_cannot(dy: Dockyard, peer: str) -> None:
    third = int(ipaddress.IPv4Network(dy.subnet).network_address.packed[2])
    routed = dy.ok("network", "create", "routed", "--subnet", f"10.245.{third}.16/28",
                   "--json").json()
    natted = dy.ok("network", "create", "natted", "--subnet", f"10.245.{third}.32/28", "--nat",
                   "--json").json()
    dy.bridges |= {routed["bridge"], natted["bridge"]}
    try:
        assert natted["nat"] is True and routed["nat"] is False
        dy.ok("launch", IMAGE, "out-routed", "--network", "routed")
        dy.ok("launch", IMAGE, "out-natted", "--network", "natted")
        assert dy.cli("exec", "out-routed", "--", "ping", "-c1", "-W2", peer).code != 0
        assert dy.cli("exec", "out-natted", "--", "ping", "-c1", "-W2", peer).code == 0
        assert nat_subnet_of(natted["bridge"]) == natted["subnet"]
    finally:
        dy.cli("delete", "out-routed", "--force")
        dy.cli("delete", "out-natted", "--force")
        dy.cli("network", "delete", "routed")
        dy.cli("network", "delete", "natted")
    deadline = time.monotonic() + 10  # the agent removes its rules once it sees the delete
    while nat_subnet_of(natted["bridge"]) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert nat_subnet_of(natted["bridge"]) is None
