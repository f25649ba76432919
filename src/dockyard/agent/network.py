"""The real HostNetwork: bridges, veths and forwarding rules through the adapters.

Bridges already made are remembered so the hot path (a create) only checks that the bridge
still exists (one netlink lookup); a bridge deleted from outside is made again with its
address and forwarding rule. A full resync forgets them all and re-verifies everything.

Across hosts (`uplink` set, or any `ovs` network): one Open vSwitch bridge per host,
`dytrunk`, is the trunk. The uplink (a NIC in production, `uplink0` in the dev-cluster) is
its trunk port, carrying every network's VLAN tagged. Each network keeps its Linux bridge
with the gateway (the same MAC on every host: an anycast gateway), joined to the trunk by a
veth `dyp<id>` ↔ `dyt<id>` whose trunk end is an access port of the network's VLAN. Instances
of a `bridge` network sit on the Linux bridge; instances of an `ovs` network are access ports
of the trunk themselves (tx checksum offload off on their eth0, see adapters/ovs.py). No
uplink and no ovs network: nothing of this is made and a host works exactly as before.

Anti-spoofing (adapters/antispoof.py): the host end of every instance on a Linux bridge gets
nftables rules, made just before plumbing and deleted on unplumb (they name the veth, so
they would outlive it). Not covered: instances of an `ovs` network, whose ports are on the
userspace OVS datapath, which bridge netfilter never sees (OVS flow rules would be needed).
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from dockyard.adapters import antispoof, iptables, netlink, ovs
from dockyard.errors import BackendError
from dockyard.model import ids
from dockyard.model.agent import DesiredInstance, DesiredNetwork

TRUNK = "dytrunk"
log = logging.getLogger(__name__)


def anycast_mac(network_id: str) -> str:
    """The gateway MAC of a network on every host (locally administered, from its id)."""
    raw = network_id[:10].ljust(10, "0")
    return "02:" + ":".join(raw[i:i + 2] for i in range(0, 10, 2))


class LinuxHostNetwork:
    def __init__(self, uplink: str | None = None, ovs_db: str | None = None) -> None:
        self._ready: set[str] = set()
        self._nat: dict[str, str] = {}  # bridge -> subnet of the NAT networks made here
        self._lock = threading.Lock()
        self._uplink = uplink
        self._ovs_db = ovs_db
        self._trunk_ready = False

    def _trunked(self, net: DesiredNetwork) -> bool:
        return net.vlan is not None and (self._uplink is not None or net.mode == "ovs")

    def ensure_network(self, net: DesiredNetwork) -> None:
        if net.bridge in self._ready and netlink.link_exists(net.bridge):
            return
        with self._lock:
            prefix = ipaddress.IPv4Network(net.subnet).prefixlen
            trunked = self._trunked(net)
            netlink.ensure_bridge(net.bridge, net.gateway, prefix,
                                  anycast_mac(net.id) if trunked else None)
            iptables.ensure_bridge_forwarding(net.bridge, net.subnet)
            if net.nat:
                iptables.ensure_nat(net.bridge, net.subnet)
                self._nat[net.bridge] = net.subnet
            if trunked:
                self._ensure_trunk()
                near, far = _link_names(net.id)
                netlink.ensure_link_pair(near, far, net.bridge)
                ovs.tx_offload_off(near)
                ovs.add_port(self._ovs_db, TRUNK, far, net.vlan)
            self._ready.add(net.bridge)

    def _ensure_trunk(self) -> None:
        if self._trunk_ready and netlink.link_exists(TRUNK):
            return
        ovs.ensure_bridge(self._ovs_db, TRUNK)
        if self._uplink is not None:
            ovs.add_port(self._ovs_db, TRUNK, self._uplink, None)
        self._trunk_ready = True

    def forget(self) -> None:
        with self._lock:
            self._ready.clear()

    def remove_network(self, bridge: str) -> None:
        with self._lock:
            subnet = self._nat.pop(bridge, None) or iptables.nat_subnet_of(bridge)
            if subnet is not None:
                iptables.remove_nat(bridge, subnet)
            iptables.remove_bridge_forwarding(bridge)
            network_id = bridge.removeprefix("dyb")
            near, far = _link_names(network_id)
            if self._trunk_ready or self._uplink is not None:
                ovs.del_port(self._ovs_db, far)
            netlink.unplumb(near)
            netlink.delete_bridge(bridge)
            self._ready.discard(bridge)

    def plumb(self, pid: int, d: DesiredInstance) -> None:
        on_ovs = d.network.mode == "ovs" and d.network.vlan is not None
        host_end = ids.host_veth_name(d.id)
        if not on_ovs:  # before the veth exists: the rules name it, and no frame slips by
            antispoof.ensure(host_end, d.mac, d.ip)
        netlink.plumb(pid, host_end, ids.peer_veth_name(d.id),
                      None if on_ovs else d.network.bridge, d.mac, d.ip, d.prefixlen,
                      d.network.gateway, garp=not on_ovs)
        if on_ovs:
            ovs.tx_offload_off_in(pid, "eth0")
            ovs.add_port(self._ovs_db, TRUNK, host_end, d.network.vlan)
            # once a port of the switch: sent before, it reached no switch, and after a move
            # the others kept the MAC on the old host's side until their ARP entry aged out
            netlink.announce(pid, d.mac, d.ip)

    def arrived(self, d: DesiredInstance) -> None:
        """The instance's MAC was elsewhere until now (it moved here, eth0 plumbed and
        announced): a switch of this host that learned it on its trunk forgets the old way at
        once (adapters/ovs.py `purge_flows`). Best effort: without it, frames reach the
        instance after the switch's next revalidation (≤ 0.5 s)."""
        if not self._trunked(d.network):
            return
        try:
            ovs.purge_flows(self._ovs_db)
        except BackendError as exc:
            log.warning("instance %s arrived: the switch's flows were not purged: %s", d.id,
                        exc.message)

    def unplumb(self, instance_id: str) -> None:
        host_end = ids.host_veth_name(instance_id)
        # the rules go first: they are ours even when the link name is held by something
        # that is not (unplumb refuses to delete a foreign link and raises)
        antispoof.remove(host_end)
        if self._trunk_ready or self._uplink is not None:
            ovs.del_port(self._ovs_db, host_end)
        netlink.unplumb(host_end)

    def eth0(self, pid: int) -> netlink.Eth0 | None:
        return netlink.instance_eth0(pid)


def _link_names(network_id: str) -> tuple[str, str]:
    """(Linux-bridge end, trunk end) of the veth joining a network's bridge to the trunk."""
    return f"dyp{network_id[:ids.ID_LEN]}", f"dyt{network_id[:ids.ID_LEN]}"
