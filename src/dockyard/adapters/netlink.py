"""Host networking through netlink (pyroute2): bridges, veth plumbing, instance eth0, routes.

Invariants
----------
* Only interfaces Dockyard names are created or deleted: bridges passed by name, veth host ends
  (ours by naming convention) and, inside an instance's network namespace, the peer that
  `plumb` creates there. A name held by a different kind of link raises `Conflict`.
* `plumb` never touches the agent's own network namespace from the peer side: a pid living in
  the agent's netns is refused (plumbing "into" it would rename and readdress host links).
* Every failure leaves no half-made veth behind and surfaces as `BackendError` (or `Conflict`).
* Every public function is idempotent: calling it again with the same arguments is a no-op.

How we reach the container's netns
----------------------------------
pyroute2 0.9.7 implements ``IPRoute(netns=...)`` / ``NetNS(...)`` by forking a
``multiprocessing`` child that does setns(2) and passes the netlink socket back: ~6 ms per
socket, a ResourceWarning in the child, and with the default ``flags=os.O_CREAT`` an unknown
path is *created* as a new netns instead of failing. We instead open ``/proc/PID/ns/net`` once
(the fd pins the netns even if the pid exits mid-way), run setns(2) in a short-lived thread
(setns(CLONE_NEWNET) only moves the calling thread) that just creates the netlink socket, and
hand the socket to ``IPRoute(fileno=...)``: ~1 ms (module `netns`, shared with `tc`). The
same fd is given to the kernel as the veth peer's ``IFLA_NET_NS_FD``, so the peer is born
inside the netns with its final MAC and never appears in the host namespace (no
udev/NetworkManager races, no rename collisions).

Cost: one RTM_NEWLINK on the host (veth + peer-in-netns + MAC + master + up), then four
small requests in the netns (rename+up, address, lo up, default route), plus lookups by name
(RTM_GETLINK by IFLA_IFNAME, never a full dump). Measured on the 2-core test machine
(kernel 6.18, pyroute2 0.9.7), 3 x 50 runs: plumb median 5.9 ms (p90 7-12 ms); idempotent
re-plumb median 3.1 ms. Two fresh IPRoute objects (host + netns) are ~1.5 ms of that; they
are made per call so that concurrent agent threads never share one (0.9's sync IPRoute drives
its own asyncio loop with run_until_complete).

BIG TCP: both ends of an instance's veth get IFLA_GSO_IPV4_MAX_SIZE and IFLA_GRO_IPV4_MAX_SIZE
raised from 64 KiB to the veth's own TSO limit (512 KiB; Linux 6.3+), so TCP between instances
hands the bridge up to 8x fewer, larger GSO packets. Everything a packet pays for on its way
across the bridge is paid per packet (two veth hops, the bridge, bridge netfilter with Docker's
bridge-nf-call-iptables=1, conntrack, the nftables anti-spoofing chain), so this cuts the CPU
cost of instance-to-instance TCP by about half (bench/NOTES.md, Network). A port whose limit
is 64 KiB (an older peer, a NIC) gets such packets segmented by the kernel on transmit as
before; nothing else changes (MTU, offloads, qdiscs). pyroute2 0.9.7 does not know these two
attributes, so one raw RTM_NEWLINK per end sets them (best effort: a kernel that refuses them
leaves the link at 64 KiB, logged). Cost: ~0.5 ms more per plumb (a netlink socket in the netns).

Gratuitous ARP: after plumbing, one ARP request announcing ``ip`` at ``mac`` is sent from eth0
through a packet socket created in the netns (best-effort, errors ignored), and twice more from
a throw-away daemon thread (`GARP_REPEATS`: 0.2 s and 1 s later), which then closes the socket
(a packet socket's close waits for an RCU grace period, 8-20 ms here). It refreshes stale
neighbour entries on the host and other instances when an address is reused with a new MAC or
moved to another host (one lost frame would leave switches and neighbours sending to the old
place until their entries go stale, 20-50 s), and stays on the instance's own segment.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from dockyard.adapters.netns import (
    failure_reason,
    get_link,
    host_iproute,
    netlink_errors,
    netns_iproute,
    open_netns,
    run_in_netns,
)
from dockyard.errors import BackendError, Conflict
from dockyard.model.host import Route

__all__ = [
    "BIG_TCP_SIZE",
    "Eth0",
    "delete_bridge",
    "ensure_bridge",
    "ensure_link_pair",
    "instance_eth0",
    "ipv4_gso_sizes",
    "link_exists",
    "set_ipv4_gso_sizes",
    "list_routes",
    "plumb",
    "unplumb",
]

log = logging.getLogger(__name__)

_IFF_UP = 0x1
_IFNAMSIZ = 15  # usable characters of an interface name
_MAIN_TABLE = 254
_INSTANCE_IFNAME = "eth0"
GARP_REPEATS = (0.2, 0.8)  # seconds before each repeat of a gratuitous ARP (after the first)
BRIDGE_MAX_PORTS = 1023  # port numbers are 10 bits and 0 is not a port (BR_MAX_PORTS)
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

BIG_TCP_SIZE = 512 * 1024  # upper bound of an instance veth's IPv4 GSO/GRO size (module doc)
_LEGACY_GSO_SIZE = 65536
_RTM_NEWLINK = 16
_RTM_GETLINK = 18
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_IFLA_GSO_IPV4_MAX_SIZE = 63  # linux/if_link.h, 6.3+
_IFLA_GRO_IPV4_MAX_SIZE = 64


@dataclass(frozen=True)
class Eth0:
    """What an instance's eth0 looks like from inside its netns.

    `up` is the administrative IFF_UP flag; `addresses` are IPv4 "a.b.c.d/len" strings.
    """

    mac: str
    addresses: list[str]
    up: bool


def _kind(link: Any) -> str | None:
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


def _delete_link(ipr: Any, index: int, what: str) -> None:
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # already gone: fine
            raise BackendError(f"deleting {what}: {failure_reason(exc)}") from exc


def _random_mac() -> str:
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in octets)


def _check_ifname(name: str) -> None:
    if not name or len(name) > _IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise BackendError(f"invalid interface name {name!r} (1-{_IFNAMSIZ} chars, no / or space)")


def _check_addressing(mac: str, ip: str, prefixlen: int, gateway: str) -> str:
    """Validate plumb's addressing arguments; return the MAC in canonical lower case."""
    mac = mac.lower()
    if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise BackendError(f"invalid unicast MAC address {mac!r}")
    try:
        iface = ipaddress.IPv4Interface(f"{ip}/{prefixlen}")
        gw = ipaddress.IPv4Address(gateway)
    except ValueError as exc:
        raise BackendError(f"invalid address {ip}/{prefixlen} via {gateway}: {exc}") from exc
    if gw not in iface.network or gw == iface.ip:
        raise BackendError(f"gateway {gateway} is not another address of {iface.network}")
    return mac


# --------------------------------------------------------------------------- bridges


def ensure_bridge(name: str, gateway: str, prefixlen: int, mac: str | None = None) -> None:
    """Make bridge `name` exist, carry `gateway/prefixlen` and be up. Nothing else (no NAT).

    A new bridge gets a fixed random MAC: a bridge whose MAC was never set takes the lowest
    port MAC and changes it as ports come and go, which would leave instances with a stale
    ARP entry for their gateway. Other addresses already on the bridge are left alone.
    `mac` fixes that MAC (the same on every host: an anycast gateway for a network that
    spans hosts, so duplicate ARP replies for the gateway all agree).
    """
    _check_ifname(name)
    try:
        ipaddress.IPv4Interface(f"{gateway}/{prefixlen}")
    except ValueError as exc:
        raise BackendError(f"invalid bridge address {gateway}/{prefixlen}: {exc}") from exc
    with host_iproute() as ipr:
        index = _ensure_bridge_link(ipr, name, mac)
        try:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise BackendError(f"adding {gateway}/{prefixlen} to {name}: "
                                   f"{failure_reason(exc)}") from exc
        with netlink_errors(f"bringing bridge {name} up"):
            ipr.link("set", index=index, state="up")


def _ensure_bridge_link(ipr: Any, name: str, mac: str | None = None) -> int:
    """Index of bridge `name`, created if missing; Conflict if the name is another kind."""
    link = get_link(ipr, name)
    if link is not None and mac and link.get_attr("IFLA_ADDRESS") != mac:
        with netlink_errors(f"setting the MAC of {name}"):
            ipr.link("set", index=int(link["index"]), address=mac)
    if link is None:
        try:
            ipr.link("add", ifname=name, kind="bridge", address=mac or _random_mac())
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # EEXIST: a concurrent ensure_bridge won
                raise BackendError(f"creating bridge {name}: {failure_reason(exc)}") from exc
        link = get_link(ipr, name)
        if link is None:
            raise BackendError(f"bridge {name} vanished right after creation")
    if _kind(link) != "bridge":
        raise Conflict(f"link {name} exists and is a {_kind(link) or 'device'}, not a bridge")
    return int(link["index"])


def _delete_of_kind(name: str, kind: str) -> None:
    """Delete link `name` if present; a link of another kind than `kind` (bridge, veth) is not
    ours and is refused."""
    with host_iproute() as ipr:
        link = get_link(ipr, name)
        if link is None:
            return
        if _kind(link) != kind:
            raise Conflict(f"link {name} is a {_kind(link) or 'device'}, not a {kind}; "
                           "not deleting it")
        _delete_link(ipr, int(link["index"]), f"{kind} {name}")


def delete_bridge(name: str) -> None:
    """Delete bridge `name` if present. Ports still attached are detached, not deleted."""
    _delete_of_kind(name, "bridge")


def link_exists(name: str) -> bool:
    """True when a link called `name` exists in the agent's netns (any kind)."""
    with host_iproute() as ipr:
        return get_link(ipr, name) is not None


# --------------------------------------------------------------------------- plumbing


def plumb(pid: int, host_ifname: str, peer_ifname: str, bridge: str | None, mac: str, ip: str,
          prefixlen: int, gateway: str, garp: bool = True) -> None:
    """Give the netns of `pid` an eth0 (mac, ip/prefixlen, default via gateway) on `bridge`.

    The host end `host_ifname` is attached to `bridge` and up; the peer is created directly
    inside the netns as `peer_ifname` and renamed eth0. A stale `host_ifname` (ours by naming
    convention) is deleted first, which also removes its old peer. If eth0 already has this
    mac and address and is the peer of `host_ifname`, only cheap state (links up, master,
    default route) is re-asserted. On failure the veth made by this call is deleted.
    `bridge` None leaves the host end without a master (an Open vSwitch port): its caller
    attaches it, then `announce`s (`garp` False: a gratuitous ARP from a port on no switch is
    lost, and the switches keep the MAC where it was before a move).
    """
    _check_ifname(host_ifname)
    _check_ifname(peer_ifname)
    mac = _check_addressing(mac, ip, prefixlen, gateway)
    cidr = f"{ip}/{prefixlen}"
    with host_iproute() as host, netns_iproute(pid) as target:
        if target is None:
            raise BackendError(f"cannot plumb {host_ifname}: process {pid} is gone")
        nsfd, ns = target
        br_index = _bridge_index(host, bridge) if bridge else None
        if _reassert_if_plumbed(host, ns, nsfd, host_ifname, br_index, mac, cidr, gateway):
            return
        _remove_stale(host, ns, host_ifname, pid)
        _create_veth(host, nsfd, host_ifname, peer_ifname, br_index, mac, pid)
        try:
            eth0 = _configure_peer(ns, peer_ifname, ip, prefixlen, gateway, pid)
        except BaseException:
            _delete_quietly(host, host_ifname)
            raise
        host_end = get_link(host, host_ifname)
        if host_end is not None:
            _enable_big_tcp(host_end, nsfd, eth0)
        if garp:
            _send_garp(nsfd, eth0, mac, ip)


def announce(pid: int, mac: str, ip: str) -> None:
    """A gratuitous ARP from the eth0 of `pid` (best effort): the switches learn where the
    MAC is now (after a move), the neighbours its address."""
    nsfd = open_netns(pid)
    if nsfd is None:
        return
    try:
        _send_garp(nsfd, -1, mac.lower(), ip)
    finally:
        os.close(nsfd)


def _bridge_index(ipr: Any, bridge: str) -> int:
    link = get_link(ipr, bridge)
    if link is None:
        raise BackendError(f"bridge {bridge} does not exist (ensure_bridge first)")
    if _kind(link) != "bridge":
        raise Conflict(f"link {bridge} is a {_kind(link) or 'device'}, not a bridge")
    return int(link["index"])


def _reassert_if_plumbed(host: Any, ns: Any, nsfd: int, host_ifname: str, br_index: int | None,
                         mac: str, cidr: str, gateway: str) -> bool:
    """Idempotent path: True (after re-asserting ups/master/route) when already plumbed."""
    eth0 = get_link(ns, _INSTANCE_IFNAME)
    host_end = get_link(host, host_ifname)
    if eth0 is None or host_end is None:
        return False
    same_pair = eth0.get_attr("IFLA_LINK") == host_end["index"]
    if not same_pair or eth0.get_attr("IFLA_ADDRESS") != mac:
        return False
    if cidr not in _ipv4_addresses(ns, int(eth0["index"])):
        return False
    with netlink_errors(f"re-asserting {host_ifname} on bridge"):
        host.link("set", index=int(host_end["index"]), state="up",
                  **({"master": br_index} if br_index is not None else {}))
    _finish_ns_config(ns, int(eth0["index"]), gateway)
    _enable_big_tcp(host_end, nsfd, int(eth0["index"]))
    return True


def _remove_stale(host: Any, ns: Any, host_ifname: str, pid: int) -> None:
    """Delete a leftover host end (and with it its peer); refuse a foreign eth0 in the netns."""
    stale = get_link(host, host_ifname)
    if stale is not None:
        if _kind(stale) != "veth":
            raise Conflict(f"link {host_ifname} exists and is a {_kind(stale) or 'device'}, "
                           "not a veth")
        _delete_link(host, int(stale["index"]), f"stale veth {host_ifname}")
    if get_link(ns, _INSTANCE_IFNAME) is not None:
        raise Conflict(f"the netns of pid {pid} already has an eth0 that is not the peer of "
                       f"{host_ifname}; unplumb its host end first")


def _create_veth(host: Any, nsfd: int, host_ifname: str, peer_ifname: str, br_index: int | None,
                 mac: str, pid: int) -> None:
    """One RTM_NEWLINK: host end on the bridge and up, peer born in the netns with `mac`."""
    peer = {"ifname": peer_ifname, "net_ns_fd": nsfd, "address": mac}
    try:
        host.link("add", ifname=host_ifname, kind="veth", peer=peer, state="up",
                  **({"master": br_index} if br_index is not None else {}))
    except NetlinkError as exc:
        if exc.code == errno.EXFULL and br_index is not None:
            raise BackendError(
                f"creating veth {host_ifname}: its bridge is full (a Linux bridge takes at "
                f"most {BRIDGE_MAX_PORTS} ports; instances past that on one network and host "
                "need another network)") from exc
        raise BackendError(f"creating veth {host_ifname} (peer {peer_ifname} in the netns of "
                           f"pid {pid}): {failure_reason(exc)}") from exc


def _configure_peer(ns: Any, peer_ifname: str, ip: str, prefixlen: int, gateway: str,
                    pid: int) -> int:
    """Inside the netns: rename the peer to eth0, address it, routes; return its index."""
    where = f"in the netns of pid {pid}"
    peer = get_link(ns, peer_ifname)
    if peer is None:
        raise BackendError(f"veth peer {peer_ifname} did not appear {where}")
    index = int(peer["index"])
    with netlink_errors(f"renaming {peer_ifname} to eth0 {where}"):
        ns.link("set", index=index, ifname=_INSTANCE_IFNAME, state="up")
    with netlink_errors(f"adding {ip}/{prefixlen} to eth0 {where}"):
        ns.addr("add", index=index, address=ip, prefixlen=prefixlen)
    _finish_ns_config(ns, index, gateway)
    return index


def _finish_ns_config(ns: Any, eth0_index: int, gateway: str) -> None:
    """eth0 up, lo up, default route via `gateway` (replace: idempotent)."""
    with netlink_errors("bringing eth0 and lo up"):
        ns.link("set", index=eth0_index, state="up")
        lo = get_link(ns, "lo")
        if lo is not None:
            ns.link("set", index=int(lo["index"]), state="up")
    with netlink_errors(f"setting the default route via {gateway}"):
        ns.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=eth0_index)


def _rtnl_socket(nsfd: int | None) -> socket.socket:
    """A raw NETLINK_ROUTE socket in the agent's netns (None) or in the netns `nsfd`."""
    def make() -> socket.socket:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    return make() if nsfd is None else run_in_netns(nsfd, make)


def _rtnl_link_request(nsfd: int | None, msg_type: int, flags: int, index: int,
                       attrs: bytes = b"") -> bytes:
    """Send one ifinfomsg request for link `index`; return the first reply (OSError on a
    netlink error)."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + attrs
    with _rtnl_socket(nsfd) as sock:
        sock.bind((0, 0))
        sock.settimeout(5.0)
        sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, _NLM_F_REQUEST | flags, 1, 0)
                  + body)
        reply = sock.recv(65536)
    length, kind = struct.unpack_from("=IH", reply)
    if kind == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, 16)[0]
        if code:
            raise OSError(code, os.strerror(code))
    return reply[:length]


def _u32(nla_type: int, value: int) -> bytes:
    return struct.pack("=HHI", 8, nla_type, value)


def _enable_big_tcp(host_end: Any, nsfd: int, eth0_index: int) -> None:
    """IPv4 GSO/GRO up to min(the veth's TSO limit, BIG_TCP_SIZE) on both ends (module doc).

    Best effort: a failure is logged and the link keeps working at 64 KiB."""
    size = min(int(host_end.get_attr("IFLA_TSO_MAX_SIZE") or 0), BIG_TCP_SIZE)
    if size <= _LEGACY_GSO_SIZE:
        return
    attrs = _u32(_IFLA_GSO_IPV4_MAX_SIZE, size) + _u32(_IFLA_GRO_IPV4_MAX_SIZE, size)
    try:
        _rtnl_link_request(None, _RTM_NEWLINK, _NLM_F_ACK, int(host_end["index"]), attrs)
        _rtnl_link_request(nsfd, _RTM_NEWLINK, _NLM_F_ACK, eth0_index, attrs)
    except OSError as exc:
        log.warning("BIG TCP (IPv4 GSO/GRO %d) on %s and its eth0: %s", size,
                    host_end.get_attr("IFLA_IFNAME"), failure_reason(exc))


def set_ipv4_gso_sizes(ifname: str, size: int) -> None:
    """Set the IPv4 GSO and GRO max size of link `ifname` in the agent's netns (what plumb
    does to instance veths; the benchmark gives a bare veth pair the same for comparison)."""
    attrs = _u32(_IFLA_GSO_IPV4_MAX_SIZE, size) + _u32(_IFLA_GRO_IPV4_MAX_SIZE, size)
    with netlink_errors(f"setting the IPv4 GSO/GRO size of {ifname}"):
        _rtnl_link_request(None, _RTM_NEWLINK, _NLM_F_ACK, socket.if_nametoindex(ifname), attrs)


def ipv4_gso_sizes(ifname: str, pid: int | None = None) -> tuple[int | None, int | None]:
    """(IPv4 GSO max size, IPv4 GRO max size) of link `ifname` in the agent's netns, or in
    the netns of `pid`; None for an attribute the kernel does not report (before 6.3)."""
    nsfd = open_netns(pid) if pid is not None else None
    if pid is not None and nsfd is None:
        raise BackendError(f"reading {ifname}: process {pid} is gone")
    try:
        with netlink_errors(f"reading the GSO sizes of {ifname}"):
            index = (socket.if_nametoindex(ifname) if nsfd is None
                     else run_in_netns(nsfd, lambda: socket.if_nametoindex(ifname)))
            reply = _rtnl_link_request(nsfd, _RTM_GETLINK, 0, index)
    finally:
        if nsfd is not None:
            os.close(nsfd)
    found: dict[int, int] = {}
    offset = 32  # nlmsghdr + ifinfomsg
    while offset + 4 <= len(reply):
        nla_len, nla_type = struct.unpack_from("=HH", reply, offset)
        if nla_len < 4:
            break
        if nla_len == 8:
            found[nla_type & 0x3FFF] = struct.unpack_from("=I", reply, offset + 4)[0]
        offset += (nla_len + 3) & ~3
    return found.get(_IFLA_GSO_IPV4_MAX_SIZE), found.get(_IFLA_GRO_IPV4_MAX_SIZE)


def _delete_quietly(host: Any, host_ifname: str) -> None:
    """Rollback helper: remove what plumb created; never masks the original error."""
    try:
        link = get_link(host, host_ifname)
        if link is not None:
            host.link("del", index=int(link["index"]))
    except (BackendError, NetlinkError, OSError) as exc:
        log.warning("rollback: could not delete %s: %s", host_ifname, exc)


def _send_garp(nsfd: int, eth0_index: int, mac: str, ip: str) -> None:
    """Best-effort gratuitous ARP request from eth0 (see module docstring)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    pa = socket.inet_aton(ip)
    frame = (b"\xff" * 6 + hw + struct.pack("!H", 0x0806)
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + pa + b"\x00" * 6 + pa)

    def send() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # 0: receives nothing
        try:
            sock.sendto(frame, (_INSTANCE_IFNAME, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        sock = run_in_netns(nsfd, send)
    except OSError as exc:
        log.debug("gratuitous ARP from eth0 (index %d) failed: %s", eth0_index, exc)
        return

    def again_then_close() -> None:
        """The frame twice more (one lost frame would leave a moved MAC where it was until
        the neighbours' ARP entries go stale, 20-50 s), then the close, which waits for an
        RCU grace period (synchronize_net, 8-20 ms here): a throw-away thread pays both."""
        try:
            for pause in GARP_REPEATS:
                time.sleep(pause)
                sock.sendto(frame, (_INSTANCE_IFNAME, 0))  # (the socket stays in the netns)
        except OSError as exc:  # the instance went meanwhile
            log.debug("gratuitous ARP repeat from eth0 (index %d): %s", eth0_index, exc)
        finally:
            sock.close()
    threading.Thread(target=again_then_close, name="dockyard-garp", daemon=True).start()


def ensure_link_pair(near: str, far: str, bridge: str) -> None:
    """A veth `near` (a port of Linux bridge `bridge`) ↔ `far` (left for a switch), both up.

    Joins a network's Linux bridge to another switch; a leftover pair is reused."""
    _check_ifname(near)
    _check_ifname(far)
    with host_iproute() as ipr:
        br_index = _bridge_index(ipr, bridge)
        if get_link(ipr, near) is None or get_link(ipr, far) is None:
            _delete_quietly(ipr, near)
            with netlink_errors(f"creating veth {near} ↔ {far}"):
                ipr.link("add", ifname=near, kind="veth", peer={"ifname": far})
        for name, extra in ((near, {"master": br_index}), (far, {})):
            link = get_link(ipr, name)
            if link is None:
                raise BackendError(f"veth end {name} vanished right after creation")
            with netlink_errors(f"bringing {name} up"):
                ipr.link("set", index=int(link["index"]), state="up", **extra)


def unplumb(host_ifname: str) -> None:
    """Delete the host end `host_ifname` (its peer eth0 goes with it). Idempotent."""
    _delete_of_kind(host_ifname, "veth")


# --------------------------------------------------------------------------- observation


def _ipv4_addresses(ipr: Any, index: int) -> list[str]:
    with netlink_errors("listing addresses"):
        msgs = ipr.addr("dump", family=socket.AF_INET)
    return [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in msgs if m["index"] == index]


def instance_eth0(pid: int) -> Eth0 | None:
    """eth0 as seen inside the netns of `pid`; None if there is none or the pid is gone."""
    with netns_iproute(pid) as target:
        if target is None:
            return None
        _, ns = target
        link = get_link(ns, _INSTANCE_IFNAME)
        if link is None:
            return None
        index = int(link["index"])
        return Eth0(mac=str(link.get_attr("IFLA_ADDRESS")),
                    addresses=_ipv4_addresses(ns, index),
                    up=bool(link["flags"] & _IFF_UP))


def list_routes() -> list[Route]:
    """IPv4 routes of the main table except the default route, e.g. 10.0.0.0/24 dev br0."""
    with host_iproute() as ipr, netlink_errors("listing routes"):
        names = {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in ipr.link("dump")}
        routes = ipr.route("dump", family=socket.AF_INET)
        out: list[Route] = []
        for msg in routes:
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            if table != _MAIN_TABLE or msg["dst_len"] == 0:
                continue
            oif = msg.get_attr("RTA_OIF")
            out.append(Route(dst=f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}",
                             dev=names.get(int(oif)) if oif is not None else None))
        return out
