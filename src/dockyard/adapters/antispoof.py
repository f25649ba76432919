"""Anti-spoofing on an instance's host-side veth: it may send only from its own MAC and IP.

One nftables table in the `bridge` family, shared by every agent of this kernel:

    table bridge dockyard
      map ports { ifname : verdict }          "dyh<id>" : jump dyh<id>
      chain prerouting (hook prerouting, priority filter)
          iifname vmap @ports                 frames entering the bridge from a port
      chain dyh<id>                           one per instance port
          ether saddr != MAC drop
          ether type != { ip, arp } drop      IPv4 and ARP only (no IPv6, no VLAN tags)
          ip saddr != IP drop
          arp saddr ether != MAC drop
          arp saddr ip != IP drop

Invariants: `ensure` and `remove` are each one nftables transaction (through libnftables,
`nft.py`; atomic, idempotent); the base chain holds exactly one rule after either; after
`remove` neither the map element nor the chain of the port exists. The rules name the port by
interface *name*, so they outlive a deleted veth: `remove` is what deletes them. Only frames
that cross a Linux bridge are filtered: an Open vSwitch port (netdev datapath) bypasses bridge
netfilter.
"""

from __future__ import annotations

import ipaddress
import re

from dockyard.adapters import nft
from dockyard.errors import BackendError

__all__ = ["TABLE", "ensure", "ports", "remove"]

TABLE = "dockyard"
_IFNAME_RE = re.compile(r"^[a-z][a-z0-9]{1,14}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


def _base() -> list[str]:
    """The table, its port map and the base chain with its one dispatch rule."""
    return [
        f"add table bridge {TABLE}",
        f"add map bridge {TABLE} ports {{ type ifname : verdict; }}",
        f"add chain bridge {TABLE} prerouting {{ type filter hook prerouting priority filter;"
        " policy accept; }",
        f"flush chain bridge {TABLE} prerouting",
        f"add rule bridge {TABLE} prerouting iifname vmap @ports",
    ]


def _check(ifname: str) -> str:
    if not _IFNAME_RE.match(ifname):
        raise BackendError(f"invalid interface name {ifname!r}")
    return ifname


def _run(script: list[str], what: str) -> str:
    return nft.run("\n".join(script) + "\n", what)


def ensure(ifname: str, mac: str, ip: str) -> None:
    """Let frames from port `ifname` through only with source `mac` and `ip`."""
    chain = _check(ifname)
    mac = mac.lower()
    if not _MAC_RE.match(mac):
        raise BackendError(f"invalid MAC address {mac!r}")
    addr = str(ipaddress.IPv4Address(ip))
    rules = (f"ether saddr != {mac} drop", "ether type != { ip, arp } drop",
             f"ip saddr != {addr} drop", f"arp saddr ether != {mac} drop",
             f"arp saddr ip != {addr} drop")
    _run([*_base(), f"add chain bridge {TABLE} {chain}", f"flush chain bridge {TABLE} {chain}",
          *(f"add rule bridge {TABLE} {chain} {rule}" for rule in rules),
          f'add element bridge {TABLE} ports {{ "{chain}" : jump {chain} }}'],
         f"anti-spoofing rules of {ifname}")


def remove(ifname: str) -> None:
    """Delete the rules of port `ifname` (idempotent: made first, then deleted, in one
    transaction, so a missing element or chain is no error)."""
    chain = _check(ifname)
    _run([*_base(), f"add chain bridge {TABLE} {chain}",
          f'add element bridge {TABLE} ports {{ "{chain}" : jump {chain} }}',
          f'delete element bridge {TABLE} ports {{ "{chain}" }}',
          f"flush chain bridge {TABLE} {chain}", f"delete chain bridge {TABLE} {chain}"],
         f"removing the anti-spoofing rules of {ifname}")


def ports() -> set[str]:
    """The ports that have rules (chains other than the base chain)."""
    try:
        listing = nft.run(f"list table bridge {TABLE}\n", "listing the anti-spoofing rules")
    except BackendError:
        return set()  # no table: no rules
    found = re.findall(r"^\s*chain (\S+) \{", listing, flags=re.MULTILINE)
    return {name for name in found if name != "prerouting"}
