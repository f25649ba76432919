"""The links of the agent's own netns in one RTM_GETLINK dump: what a resync checks of every
instance's host veth at once (present, up, a port of the right bridge), instead of one netlink
socket per instance. Read through netlink, not /sys/class/net, which shows the namespace /sys
was mounted in (a dev-cluster host's agent runs in a netns of its own)."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.adapters.netns import host_iproute, netlink_errors

__all__ = ["LinkState", "link_states"]

_IFF_UP = 0x1


@dataclass(frozen=True)
class LinkState:
    index: int
    master: int  # the bridge (or OVS datapath) it is a port of; 0: none
    up: bool


def link_states() -> dict[str, LinkState]:
    """Name -> state of every link of the agent's netns. BackendError if netlink fails."""
    with host_iproute() as ipr, netlink_errors("listing links"):
        return {str(m.get_attr("IFLA_IFNAME")): LinkState(
                    index=int(m["index"]), master=int(m.get_attr("IFLA_MASTER") or 0),
                    up=bool(m["flags"] & _IFF_UP))
                for m in ipr.link("dump")}
