"""IPv4 address pools: choose an instance address in a network's subnet, check subnets.

Pure functions, no I/O: the caller passes what the store holds (addresses in use, host
routes) and records the result in the capacity ledger, whose UNIQUE (network, ip) constraint
is the real guard against two concurrent allocations picking the same address.

Invariants of an address returned by `allocate`:

* it is an IPv4 address inside `subnet`, in normalized dotted-quad form;
* it is never the network address, the broadcast address or the gateway
  (for a /31 or /32 there is no network/broadcast address, RFC 3021; the gateway is still
  excluded);
* it is not in `used`;
* without `requested`, it is the lowest address satisfying the above, so allocation is
  deterministic for a given ledger.

Addresses are handled as ints (one set of ints per call, one pass over the host range), so a
/16 with thousands of addresses in use costs milliseconds, not a list of 65k strings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable

from dockyard.errors import Conflict, InvalidRequest, PoolExhausted

__all__ = ["allocate", "overlaps", "validate_subnet_free"]


def _network(cidr: str, what: str) -> ipaddress.IPv4Network:
    """Parse an IPv4 CIDR written with its network address (`10.0.0.0/24`)."""
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise InvalidRequest(f"{what} {cidr!r} is not a valid CIDR: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidRequest(f"{what} {cidr!r} is not IPv4 (only IPv4 is supported)")
    return net


def _address(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidRequest(f"{what} {value!r} is not a valid IP address") from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise InvalidRequest(f"{what} {value!r} is not IPv4 (only IPv4 is supported)")
    return addr


def _host_range(net: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last usable host address as ints (inclusive)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.prefixlen >= 31:  # RFC 3021 point-to-point / single host: every address usable
        return first, last
    return first + 1, last - 1


def _used_ints(used: Collection[str]) -> set[int]:
    """Addresses in use as ints; entries that are not IPv4 cannot collide and are skipped."""
    out: set[int] = set()
    for value in used:
        try:
            addr = ipaddress.ip_address(value.strip())
        except ValueError:
            continue
        if isinstance(addr, ipaddress.IPv4Address):
            out.add(int(addr))
    return out


def _check_requested(
    net: ipaddress.IPv4Network, gateway: int, used: set[int], requested: str
) -> str:
    addr = _address(requested, "requested address")
    if addr not in net:
        raise Conflict(f"address {addr} is outside the network's subnet {net}")
    first, last = _host_range(net)
    value = int(addr)
    if value < first:
        raise Conflict(f"address {addr} is the network address of {net}")
    if value > last:
        raise Conflict(f"address {addr} is the broadcast address of {net}")
    if value == gateway:
        raise Conflict(f"address {addr} is the gateway of {net}")
    if value in used:
        raise Conflict(f"address {addr} is already in use in {net}")
    return str(addr)


def allocate(
    subnet: str, gateway: str, used: Collection[str], requested: str | None = None
) -> str:
    """Return an address of `subnet` for a new instance (see the module invariants).

    With `requested`, that address (normalized) or `InvalidRequest` when it is not a usable
    host address of the subnet, `Conflict` when it is in `used`. Without, the lowest free
    address, or `PoolExhausted` when none is left.
    """
    net = _network(subnet, "subnet")
    gw = int(_address(gateway, "gateway"))
    taken = _used_ints(used)
    if requested is not None:
        return _check_requested(net, gw, taken, requested)
    taken.add(gw)
    first, last = _host_range(net)
    for value in range(first, last + 1):
        if value not in taken:
            return str(ipaddress.IPv4Address(value))
    raise PoolExhausted(f"network {net} has no free address")


def _route_network(route: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A host route as a network; `None` for the default route, which overlaps everything."""
    text = route.strip()
    if text == "default":
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)  # interface routes carry a host part
    except ValueError:
        raise InvalidRequest(f"route {route!r} is not a valid CIDR") from None
    return None if net.prefixlen == 0 else net


def overlaps(a: str, b: str) -> bool:
    """True when the CIDRs `a` and `b` share at least one address (never across IP versions)."""
    try:
        net_a = ipaddress.ip_network(a.strip(), strict=False)
        net_b = ipaddress.ip_network(b.strip(), strict=False)
    except ValueError as exc:
        raise InvalidRequest(f"not a valid CIDR: {exc}") from None
    if net_a.version != net_b.version:
        return False
    return net_a.overlaps(net_b)


def validate_subnet_free(subnet: str, routes: Iterable[str]) -> None:
    """Raise `Conflict` if `subnet` overlaps any route already present on a host.

    The default route (`default`, `0.0.0.0/0`) is ignored: it overlaps every subnet by
    definition and a more specific on-link route is exactly what a new network adds.
    """
    net = _network(subnet, "subnet")
    for route in routes:
        other = _route_network(route)
        if other is None or other.version != net.version:
            continue
        if net.overlaps(other):
            raise Conflict(f"subnet {net} overlaps the existing route {route.strip()}")
