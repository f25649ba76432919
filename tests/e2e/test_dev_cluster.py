"""A real cluster on one machine: networks span hosts only through the uplinks."""

from __future__ import annotations

import json
import re
import subprocess
import time

from tests.e2e import hostctl
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


def test_dockerd_restart_loses_no_packet_and_the_agent_resumes(cluster: DevCluster) -> None:
    """host1's dockerd goes down and comes back (live-restore) while an instance on host3
    pings one on host1 every 20 ms: not one packet is lost (the data path is Dockyard's
    bridge, veth and uplink, not dockerd), and the agent then drives the new daemon."""
    cluster.ok("network", "create", "drst", "--subnet", "10.241.11.0/24")
    target = cluster.launch("dr1", "host1", "drst")
    pinger = cluster.launch("dr3", "host3", "drst")
    pid = hostctl.docker(cluster.home, "host3", "inspect", "-f", "{{.State.Pid}}",
                         f"dy-{pinger['id']}").strip()
    count, interval = 1000, 0.02  # 20 s of pings around the restart
    ping = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "ping", "-n", "-c",
                             str(count), "-i", str(interval), "-W", "1", str(target["ip"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        started = time.monotonic()
        hostctl.stop_dockerd(cluster.home, "host1")
        time.sleep(1.0)  # a daemon that is really away for a while
        hostctl.start_dockerd(cluster.home, "host1")
        restarted = time.monotonic() - started
        out, _ = ping.communicate(timeout=count * interval + 30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    print(f"dockerd of host1 away and back in {restarted:.1f} s; {out.splitlines()[-2:]}")
    assert restarted < count * interval - 2, "the restart outlasted the pings"
    sent, received = (int(n) for n in re.search(  # type: ignore[union-attr]
        r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent == count and received == count, out[-400:]
    # the agent resumes control of the new daemon: a live resize, exec and stop/start work
    cluster.ok("resize", "dr1", "--pids", "321")
    shown = json.loads(cluster.ok("show", "dr1", "--json"))
    assert shown["state"] == "running" and shown["limits"]["pids"] == 321
    assert hostctl.docker(cluster.home, "host1", "inspect", "-f", "{{.HostConfig.PidsLimit}}",
                          f"dy-{target['id']}").strip() == "321"
    assert cluster.ok("exec", "dr1", "--", "echo", "inside").strip() == "inside"
    cluster.ok("stop", "dr1")
    cluster.ok("start", "dr1")
    assert cluster.reaches("dr3", str(target["ip"]))
