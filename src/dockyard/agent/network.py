"""The real HostNetwork: bridges, veths and forwarding rules through the adapters.

Bridges already made are remembered so the hot path (a create) only checks that the bridge
still exists (one netlink lookup); a bridge deleted from outside is made again with its
address and forwarding rule. A full resync forgets them all and re-verifies everything.
"""

from __future__ import annotations

import ipaddress
import threading

from dockyard.adapters import iptables, netlink
from dockyard.model import ids
from dockyard.model.agent import DesiredInstance, DesiredNetwork


class LinuxHostNetwork:
    def __init__(self) -> None:
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def ensure_network(self, net: DesiredNetwork) -> None:
        if net.bridge in self._ready and netlink.link_exists(net.bridge):
            return
        with self._lock:
            prefix = ipaddress.IPv4Network(net.subnet).prefixlen
            netlink.ensure_bridge(net.bridge, net.gateway, prefix)
            iptables.ensure_bridge_forwarding(net.bridge)
            self._ready.add(net.bridge)

    def forget(self) -> None:
        with self._lock:
            self._ready.clear()

    def remove_network(self, bridge: str) -> None:
        with self._lock:
            iptables.remove_bridge_forwarding(bridge)
            netlink.delete_bridge(bridge)
            self._ready.discard(bridge)

    def plumb(self, pid: int, d: DesiredInstance) -> None:
        netlink.plumb(pid, ids.host_veth_name(d.id), ids.peer_veth_name(d.id),
                      d.network.bridge, d.mac, d.ip, d.prefixlen, d.network.gateway)

    def unplumb(self, instance_id: str) -> None:
        netlink.unplumb(ids.host_veth_name(instance_id))

    def eth0(self, pid: int) -> netlink.Eth0 | None:
        return netlink.instance_eth0(pid)
