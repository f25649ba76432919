"""A real cluster on one machine: networks span hosts only through the uplinks."""

from __future__ import annotations

from tests.e2e.conftest import DevCluster


def test_bridge_network_spans_hosts_and_cut_uplink_isolates_one_host(
        cluster: DevCluster) -> None:
    cluster.ok("network", "create", "span", "--subnet", "10.241.10.0/24")
    ips = {n: str(cluster.launch(f"b{n}", f"host{n}", "span")["ip"]) for n in (1, 2, 3)}
    assert cluster.reaches("b1", ips[3])
    assert cluster.reaches("b1", ips[2])
    cluster.ok("dev-cluster", "cut-uplink", "host2", "--home", str(cluster.home))
    try:
        assert not cluster.reaches("b1", ips[2])
        assert cluster.reaches("b1", ips[3])
        assert cluster.reaches("b3", ips[1])
    finally:
        cluster.ok("dev-cluster", "restore-uplink", "host2", "--home", str(cluster.home))
    assert cluster.reaches("b1", ips[2])


def test_ovs_vlans_span_hosts_and_are_isolated(cluster: DevCluster) -> None:
    cluster.ok("network", "create", "v100", "--subnet", "10.241.100.0/24", "--mode", "ovs",
               "--vlan", "100")
    cluster.ok("network", "create", "v200", "--subnet", "10.241.200.0/24", "--mode", "ovs",
               "--vlan", "200")
    shown = cluster.ok("network", "show", "v100", "--json")
    assert '"vlan": 100' in shown and '"mode": "ovs"' in shown
    o1 = cluster.launch("o1", "host1", "v100")
    o3 = cluster.launch("o3", "host3", "v100")
    p3 = cluster.launch("p3", "host3", "v200")
    assert cluster.reaches("o1", str(o3["ip"]))
    assert cluster.arp_reaches("o1", str(o3["ip"]))
    assert not cluster.reaches("o1", str(p3["ip"]))
    assert not cluster.arp_reaches("o1", str(p3["ip"]))
    assert not cluster.reaches("p3", str(o1["ip"]))
