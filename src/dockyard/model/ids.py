"""Identifiers and the names derived from them.

Kernel interface names are at most 15 characters, so ids are 12 hex digits and every name a
Dockyard host creates is a 3-letter prefix + id: `dyb` bridge, `dyh` host end of an instance's
veth, `dyc` its container end before it is renamed `eth0`, `dyv` the tap of a VM.
Containers are `dy-<id>`.
"""

from __future__ import annotations

import uuid

ID_LEN = 12


def new_id() -> str:
    return uuid.uuid4().hex[:ID_LEN]


def container_name(instance_id: str) -> str:
    return f"dy-{instance_id}"


def bridge_name(network_id: str) -> str:
    return f"dyb{network_id[:ID_LEN]}"


def host_veth_name(instance_id: str) -> str:
    return f"dyh{instance_id[:ID_LEN]}"


def peer_veth_name(instance_id: str) -> str:
    return f"dyc{instance_id[:ID_LEN]}"


def vm_tap_name(instance_id: str) -> str:
    """The tap of a VM instance on its network's bridge."""
    return f"dyv{instance_id[:ID_LEN]}"


def mac_for_ip(ip: str) -> str:
    """A stable, locally administered unicast MAC derived from an IPv4 address."""
    octets = [int(part) for part in ip.split(".")]
    return "02:d7:" + ":".join(f"{o:02x}" for o in octets)


# Container labels (DESIGN.md "Ownership").
LABEL_CLUSTER = "dockyard.cluster"
LABEL_INSTANCE = "dockyard.instance"
LABEL_NAME = "dockyard.name"
LABEL_PROJECT = "dockyard.project"
LABEL_GENERATION = "dockyard.generation"
LABEL_HOST = "dockyard.host"  # the host whose agent owns it (agents may share a dockerd)
LABEL_LXCFS = "dockyard.lxcfs"  # "1": the container has the lxcfs mounts (re-bound on restart)
