"""iptables rules that let instances on one Dockyard bridge reach each other.

dockerd sets the FORWARD policy to DROP and enables bridge-nf-call-iptables, so even frames
bridged between two ports of *our* bridge traverse FORWARD and are dropped. The fix is one rule
per bridge, `-i BR -o BR -j ACCEPT`:

* it goes to position 1 of DOCKER-USER when that chain exists: dockerd re-creates its own
  FORWARD rules on every start but keeps `FORWARD -j DOCKER-USER` first and never flushes
  DOCKER-USER, so the rule survives dockerd restarts and precedes DOCKER-USER's final RETURN;
* otherwise (no dockerd, or `--iptables=false`) it goes to position 1 of FORWARD.

Invariants: exactly one copy of the rule after `ensure_bridge_forwarding`; none in either chain
after `remove_bridge_forwarding`; no other rule is ever touched. Every call shells out to
`iptables -w` (waits for the xtables lock) and raises BackendError with its stderr on failure.
"""

from __future__ import annotations

import ipaddress
import subprocess

from dockyard.errors import BackendError

__all__ = ["ensure_bridge_forwarding", "forwarding_chain", "has_bridge_forwarding",
           "remove_bridge_forwarding"]

_DOCKER_USER = "DOCKER-USER"
_FORWARD = "FORWARD"
_TIMEOUT_S = 30.0
_MAX_COPIES = 64  # bound on the delete loop; one copy is normal


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `iptables -w ARGS` (filter table); never raises for a non-zero exit status."""
    cmd = ["iptables", "-w", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"running {' '.join(cmd)}: {exc}") from exc


def _fail(proc: subprocess.CompletedProcess[str]) -> BackendError:
    cmd = " ".join(str(a) for a in proc.args)
    detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
    return BackendError(f"{cmd}: {detail}")


def _rule(bridge: str) -> list[str]:
    if not bridge or len(bridge) > 15 or bridge.startswith("-") or any(
            c.isspace() for c in bridge):
        raise BackendError(f"invalid bridge name {bridge!r}")
    return ["-i", bridge, "-o", bridge, "-j", "ACCEPT"]


def _chain_exists(chain: str) -> bool:
    return _iptables("-S", chain).returncode == 0


def _rule_present(chain: str, rule: list[str]) -> bool:
    """`iptables -C`: exit 0 = present, 1 = absent; anything else is a real failure."""
    proc = _iptables("-C", chain, *rule)
    if proc.returncode in (0, 1):
        return proc.returncode == 0
    raise _fail(proc)


def _target_chain() -> str:
    return _DOCKER_USER if _chain_exists(_DOCKER_USER) else _FORWARD


def _notrack(bridge: str, subnet: str) -> list[str]:
    """Instance-to-instance packets on `bridge`: from its subnet to its subnet, not to this
    host (the gateway address stays tracked). Routed or NATed traffic has an address outside
    the subnet on one side, so it keeps conntrack."""
    ipaddress.IPv4Network(subnet)  # validates
    return ["-i", bridge, "-s", subnet, "-d", subnet, "-m", "addrtype", "!", "--dst-type",
            "LOCAL", "-j", "NOTRACK"]


def _raw_present(rule: list[str]) -> bool:
    proc = _iptables("-t", "raw", "-C", "PREROUTING", *rule)
    if proc.returncode in (0, 1):
        return proc.returncode == 0
    raise _fail(proc)


def _raw_rules_of(bridge: str) -> list[list[str]]:
    """Our NOTRACK rules for `bridge` in raw PREROUTING, whatever their match (this also finds
    the `--physdev-is-bridged` form of earlier versions, which never matched there)."""
    proc = _iptables("-t", "raw", "-S", "PREROUTING")
    if proc.returncode != 0:
        raise _fail(proc)
    found = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if words[:2] == ["-A", "PREROUTING"] and words[-2:] == ["-j", "NOTRACK"] \
                and any(words[i:i + 2] == ["-i", bridge] for i in range(2, len(words))):
            found.append(words[2:])
    return found


def forwarding_chain() -> str:
    """The chain `ensure_bridge_forwarding` puts the rule in: DOCKER-USER, else FORWARD."""
    return _target_chain()


def has_bridge_forwarding(bridge: str) -> bool:
    """True when the rule for `bridge` is in the chain `ensure_bridge_forwarding` uses."""
    return _rule_present(_target_chain(), _rule(bridge))


def ensure_bridge_forwarding(bridge: str, subnet: str | None = None) -> None:
    """Accept traffic bridged between ports of `bridge` (idempotent, see module docstring).
    With `subnet`, also keep instance-to-instance traffic out of conntrack: dockerd turns on
    bridge-nf-call-iptables for every bridge, so each bridged packet would otherwise take a
    conntrack entry (east-west traffic filling the table is a classic container-host outage).
    Traffic to and from the host itself, and anything routed, is tracked as before."""
    rule = _rule(bridge)
    chain = _target_chain()
    if not _rule_present(chain, rule):
        proc = _iptables("-I", chain, "1", *rule)
        if proc.returncode != 0:
            raise _fail(proc)
    if subnet is None:
        return
    notrack = _notrack(bridge, subnet)
    if not _raw_present(notrack):
        for other in _raw_rules_of(bridge):  # an earlier form, or another subnet
            _raw_delete(other)
        proc = _iptables("-t", "raw", "-I", "PREROUTING", "1", *notrack)
        if proc.returncode != 0:
            raise _fail(proc)


def _raw_delete(rule: list[str]) -> None:
    proc = _iptables("-t", "raw", "-D", "PREROUTING", *rule)
    if proc.returncode != 0:
        raise _fail(proc)


def remove_bridge_forwarding(bridge: str) -> None:
    """Delete every copy of the rule for `bridge` from DOCKER-USER and FORWARD, and its
    NOTRACK rules (idempotent)."""
    rule = _rule(bridge)
    chains = [_FORWARD]
    if _chain_exists(_DOCKER_USER):
        chains.insert(0, _DOCKER_USER)
    for chain in chains:
        for _ in range(_MAX_COPIES):
            if not _rule_present(chain, rule):
                break
            proc = _iptables("-D", chain, *rule)
            if proc.returncode != 0:
                raise _fail(proc)
    for notrack in _raw_rules_of(bridge):
        _raw_delete(notrack)


def _nat_rules(bridge: str, subnet: str) -> list[tuple[str, str, list[str]]]:
    """(table, chain, rule) for a NAT network: masquerade what leaves the host from the
    subnet, and let it (and its replies) through FORWARD."""
    _rule(bridge)  # validates the name
    chain = _target_chain()
    return [("nat", "POSTROUTING", ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]),
            ("filter", chain, ["-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"]),
            ("filter", chain, ["-o", bridge, "!", "-i", bridge, "-m", "conntrack",
                               "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])]


def ensure_nat(bridge: str, subnet: str) -> None:
    """Masquerade for `subnet` behind the host (idempotent)."""
    for table, chain, rule in _nat_rules(bridge, subnet):
        check = _iptables("-t", table, "-C", chain, *rule)
        if check.returncode == 0:
            continue
        if check.returncode != 1:
            raise _fail(check)
        proc = _iptables("-t", table, "-I", chain, "1", *rule)
        if proc.returncode != 0:
            raise _fail(proc)


def remove_nat(bridge: str, subnet: str) -> None:
    """Remove the NAT rules of `bridge` (idempotent)."""
    for table, chain, rule in _nat_rules(bridge, subnet):
        for _ in range(_MAX_COPIES):
            if _iptables("-t", table, "-C", chain, *rule).returncode != 0:
                break
            proc = _iptables("-t", table, "-D", chain, *rule)
            if proc.returncode != 0:
                raise _fail(proc)


def nat_subnet_of(bridge: str) -> str | None:
    """The subnet a NAT rule masquerades for `bridge`, found in the nat table (after an agent
    restart the agent no longer remembers it)."""
    listing = _iptables("-t", "nat", "-S", "POSTROUTING").stdout
    for line in listing.splitlines():
        parts = line.split()
        if "MASQUERADE" in parts and f"! -o {bridge} " in line + " " and "-s" in parts:
            return parts[parts.index("-s") + 1]
    return None
