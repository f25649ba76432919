"""The tap of a VM instance: a persistent tap device on the network's bridge, which the VM's
QEMU opens by name (`-netdev tap,ifname=…`). Made before QEMU starts (so the anti-spoofing
rules that name it are in place before the first frame), and deleted when the VM stops or
goes. A link of that name that is not a tap is someone else's: never deleted."""

from __future__ import annotations

import errno
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from dockyard.adapters.netns import failure_reason, get_link, host_iproute, netlink_errors
from dockyard.errors import BackendError, Conflict


def _is_tap(link: Any) -> bool:
    return bool(link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "tun")


def ensure_tap(name: str, bridge: str) -> None:
    """Tap `name`, up, a port of `bridge`; made if missing. Idempotent."""
    with host_iproute() as ipr:
        link = get_link(ipr, name)
        if link is None:
            try:
                ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise BackendError(f"creating tap {name}: {failure_reason(exc)}") from exc
            link = get_link(ipr, name)
            if link is None:
                raise BackendError(f"tap {name} vanished right after creation")
        if not _is_tap(link):
            raise Conflict(f"link {name} exists and is not a tap; not using it")
        master = get_link(ipr, bridge)
        if master is None:
            raise BackendError(f"bridge {bridge} of tap {name} is missing")
        with netlink_errors(f"attaching tap {name} to {bridge}"):
            ipr.link("set", index=int(link["index"]), master=int(master["index"]), state="up")


def delete_tap(name: str) -> None:
    """Delete tap `name`. Idempotent; a non-tap of that name is refused (Conflict)."""
    with host_iproute() as ipr:
        link = get_link(ipr, name)
        if link is None:
            return
        if not _is_tap(link):
            raise Conflict(f"link {name} is not a tap; not deleting it")
        try:
            ipr.link("del", index=int(link["index"]))
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise BackendError(f"deleting tap {name}: {failure_reason(exc)}") from exc


def tap_master(name: str) -> int | None:
    """The index of the bridge the tap is a port of (None: no such tap, or no bridge)."""
    with host_iproute() as ipr:
        link = get_link(ipr, name)
        if link is None or not _is_tap(link):
            return None
        master = link.get_attr("IFLA_MASTER")
        return int(master) if master else None
