"""The entrance's own network namespace and its legs into networks, through `ip` and `ethtool`.

    ensure_netns(NS)                       /run/netns/NS, with lo up (idempotent)
    name_own_netns(NAME)                   /run/netns/NAME for the caller's own namespace
                                           (`ip netns attach`), so a process elsewhere can
                                           bind in it by name
    ensure_leg(NS, near, far, bridge, ip/len)
        a veth: `near` a port of the network's Linux bridge in our namespace, `far` in NS with
        an address of its own in the network's subnet (and a MAC of its own); tx checksum
        offload off on `far` (packets may go on through a userspace OVS trunk: adapters/ovs.py)
    legs(NS) -> {far: ip/len}              what NS holds now
    remove_leg(near), delete_netns(NS)     idempotent

Why a namespace of its own (agent/entrance.py): the entrance's connections to replicas cannot
leave from the host's own address on a network: every host holds the network's gateway
address and MAC (an anycast gateway, agent/network.py), so a replica on *another* host would
send its answer to its own host's bridge, never back to the entrance. A leg's address and MAC
are the entrance host's alone, so answers come back across the trunk. HAProxy runs inside NS
and listens in the host's namespace by name (`bind … namespace NAME`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dockyard.errors import BackendError

__all__ = ["NETNS_DIR", "delete_netns", "ensure_leg", "ensure_netns", "legs", "name_own_netns",
           "remove_leg"]

NETNS_DIR = Path("/run/netns")
_TIMEOUT_S = 30.0


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"running {' '.join(cmd)}: {exc}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise BackendError(f"{' '.join(cmd)}: {detail}")
    return proc


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > 15 or not name.replace("-", "").isalnum():
        raise BackendError(f"{what} {name!r} is not a usable name (1-15 letters, digits, -)")


def ensure_netns(ns: str) -> None:
    _check_name(ns, "network namespace")
    if not (NETNS_DIR / ns).exists():
        _run("ip", "netns", "add", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")


def name_own_netns(name: str) -> None:
    """/run/netns/NAME names the caller's network namespace (made again if it names another:
    the name outlives a restarted agent, the namespace it named may not)."""
    _check_name(name, "network namespace")
    path = NETNS_DIR / name
    try:
        own, named = os.stat("/proc/self/ns/net"), os.stat(path)
        if (own.st_dev, own.st_ino) == (named.st_dev, named.st_ino):
            return
        _run("ip", "netns", "delete", name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BackendError(f"reading {path}: {exc}") from exc
    _run("ip", "netns", "attach", name, str(os.getpid()))


def delete_netns(ns: str) -> None:
    """Remove the name NS: a namespace only it holds goes, with its legs' far ends (their near
    ends with them); one a process runs in (a name made by `name_own_netns`) stays. Idempotent."""
    _check_name(ns, "network namespace")
    if (NETNS_DIR / ns).exists():
        _run("ip", "netns", "delete", ns)


def legs(ns: str) -> dict[str, str]:
    """far-end name → its IPv4 address with prefix length, for the legs NS holds."""
    if not (NETNS_DIR / ns).exists():
        return {}
    out = json.loads(_run("ip", "-n", ns, "-j", "-4", "addr", "show").stdout or "[]")
    return {link["ifname"]: f"{a['local']}/{a['prefixlen']}"
            for link in out if link.get("ifname") != "lo"
            for a in link.get("addr_info", [])[:1]}


def ensure_leg(ns: str, near: str, far: str, bridge: str, address: str,
               present: dict[str, str] | None = None) -> None:
    """The leg `near` (port of `bridge`) ↔ `far` (in NS, holding `address`, IP/LEN), up.
    A leg that is not exactly that is made again. `present`: what `legs(NS)` returned just
    before (a caller ensuring several legs reads the namespace once)."""
    for name, what in ((near, "leg"), (far, "leg"), (bridge, "bridge")):
        _check_name(name, what)
    if (legs(ns) if present is None else present).get(far) == address \
            and _master(near) == bridge:
        return
    remove_leg(near)
    _run("ip", "-n", ns, "link", "delete", far, check=False)  # a far end left without a peer
    _run("ip", "link", "add", near, "type", "veth", "peer", "name", far, "netns", ns)
    try:
        _run("ip", "link", "set", near, "master", bridge, "up")
        _run("ip", "-n", ns, "addr", "add", address, "dev", far)
        _run("ip", "-n", ns, "link", "set", far, "up")
        _run("nsenter", f"--net={NETNS_DIR / ns}", "ethtool", "-K", far, "tx", "off")
    except BackendError:
        remove_leg(near)
        raise


def remove_leg(near: str) -> None:
    """Delete the leg whose near end is `near` (its far end goes with it). Idempotent."""
    _check_name(near, "leg")
    _run("ip", "link", "delete", near, check=False)


def _master(near: str) -> str | None:
    """The bridge `near` is a port of (None: no such link, or not a port). Read with `ip`, not
    /sys/class/net, which shows the namespace /sys was mounted in (a dev-cluster host's agent
    runs in a namespace of its own under the machine's /sys)."""
    proc = _run("ip", "-j", "link", "show", near, check=False)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout or "[]")
    return found[0].get("master") if found else None
