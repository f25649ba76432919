"""IPAM: address choice, requested-address checks, pool exhaustion, subnet overlaps."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from dockyard.errors import Conflict, InvalidRequest, PoolExhausted
from dockyard.ipam import allocate, overlaps, validate_subnet_free


@pytest.mark.parametrize(
    ("subnet", "gateway", "used", "expected"),
    [
        ("10.0.0.0/24", "10.0.0.1", [], "10.0.0.2"),
        ("10.0.0.0/24", "10.0.0.254", [], "10.0.0.1"),
        ("10.0.0.0/24", "10.0.0.1", ["10.0.0.2", "10.0.0.3"], "10.0.0.4"),
        ("10.0.0.0/24", "10.0.0.1", ["10.0.0.3"], "10.0.0.2"),  # lowest hole first
        ("10.0.0.0/24", "10.0.0.1", ["10.0.0.2", "not-an-ip", "fd00::2"], "10.0.0.3"),
        ("192.168.8.0/29", "192.168.8.1", ["192.168.8.2"], "192.168.8.3"),
        ("10.9.0.0/31", "10.9.0.0", [], "10.9.0.1"),  # RFC 3021: no network/broadcast
    ],
)
def test_allocate_lowest_free(subnet: str, gateway: str, used: list[str], expected: str) -> None:
    assert allocate(subnet, gateway, used) == expected


def test_allocate_fills_a_slash_29_then_exhausts() -> None:
    used: list[str] = []
    for _ in range(5):  # .1 to .6 are hosts; .1 is the gateway
        used.append(allocate("10.1.0.0/29", "10.1.0.1", used))
    assert used == [f"10.1.0.{i}" for i in range(2, 7)]
    with pytest.raises(PoolExhausted, match=r"network 10\.1\.0\.0/29 has no free address"):
        allocate("10.1.0.0/29", "10.1.0.1", used)


def test_pool_exhausted_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        allocate("10.1.0.0/30", "10.1.0.1", ["10.1.0.2"])


class WatchedList(list[str]):
    """The addresses in use, counting how allocate reads them."""

    passes = 0
    lookups = 0

    def __iter__(self) -> Iterator[str]:
        self.passes += 1
        return super().__iter__()

    def __contains__(self, value: object) -> bool:
        self.lookups += 1
        return super().__contains__(value)


def test_allocate_is_linear_on_a_busy_slash_16() -> None:
    """One pass over the used addresses, then set lookups: a membership test on the list per
    candidate address (8,000 x 8,000 here) is what made allocation slow on a busy network.
    Checked by counting, not by a clock (a loaded machine breaks any wall-time bound)."""
    net = ipaddress.ip_network("10.20.0.0/16")
    used = WatchedList(str(net.network_address + i) for i in range(2, 8_002))
    ip = allocate(str(net), "10.20.0.1", used)
    assert ip == str(net.network_address + 8_002)
    assert (used.passes, used.lookups) == (1, 0)


def test_allocate_reports_a_full_slash_16() -> None:
    net = ipaddress.ip_network("10.30.0.0/16")
    used = [str(net.network_address + i) for i in range(2, 65_535)]
    with pytest.raises(PoolExhausted, match=r"network 10\.30\.0\.0/16 has no free address"):
        allocate(str(net), "10.30.0.1", used)
    assert allocate(str(net), "10.30.0.1", used[:-1]) == "10.30.255.254"


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("10.0.0.7", "10.0.0.7"),
        (" 10.0.0.254 ", "10.0.0.254"),
    ],
)
def test_requested_address_returned_normalized(requested: str, expected: str) -> None:
    assert allocate("10.0.0.0/24", "10.0.0.1", ["10.0.0.2"], requested) == expected


@pytest.mark.parametrize(
    ("requested", "message", "error"),
    [  # an address the network's own state refuses is a conflict; one that is no address, invalid
        ("10.0.1.5", r"10\.0\.1\.5 is outside the network's subnet 10\.0\.0\.0/24", Conflict),
        ("10.0.0.0", r"10\.0\.0\.0 is the network address of 10\.0\.0\.0/24", Conflict),
        ("10.0.0.255", r"10\.0\.0\.255 is the broadcast address of 10\.0\.0\.0/24", Conflict),
        ("10.0.0.1", r"10\.0\.0\.1 is the gateway of 10\.0\.0\.0/24", Conflict),
        ("10.0.0.300", r"'10\.0\.0\.300' is not a valid IP address", InvalidRequest),
        ("fd00::5", r"'fd00::5' is not IPv4", InvalidRequest),
    ],
)
def test_requested_address_invalid(requested: str, message: str,
                                   error: type[Exception]) -> None:
    with pytest.raises(error, match=message):
        allocate("10.0.0.0/24", "10.0.0.1", [], requested)


def test_requested_address_in_use_is_a_conflict_not_invalid() -> None:
    with pytest.raises(Conflict, match=r"10\.0\.0\.9 is already in use") as info:
        allocate("10.0.0.0/24", "10.0.0.1", ["10.0.0.9"], "10.0.0.9")
    assert not isinstance(info.value, InvalidRequest)
    assert info.value.status == 409


@pytest.mark.parametrize(
    ("subnet", "gateway", "message"),
    [
        ("10.0.0.0/33", "10.0.0.1", r"subnet '10\.0\.0\.0/33' is not a valid CIDR"),
        ("10.0.0.5/24", "10.0.0.1", r"subnet '10\.0\.0\.5/24' is not a valid CIDR"),
        ("fd00::/64", "fd00::1", r"subnet 'fd00::/64' is not IPv4"),
        ("10.0.0.0/24", "gw", r"gateway 'gw' is not a valid IP address"),
    ],
)
def test_bad_subnet_or_gateway(subnet: str, gateway: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        allocate(subnet, gateway, [])


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("10.0.0.0/24", "10.0.0.0/24", True),
        ("10.0.0.0/16", "10.0.5.0/24", True),
        ("10.0.5.0/24", "10.0.0.0/16", True),
        ("10.0.0.0/24", "10.0.1.0/24", False),
        ("10.0.0.0/25", "10.0.0.128/25", False),
        ("10.0.0.9/24", "10.0.0.0/28", True),  # host bits tolerated
        ("10.0.0.0/24", "fd00::/8", False),
    ],
)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected


def test_overlaps_rejects_garbage() -> None:
    with pytest.raises(InvalidRequest, match="not a valid CIDR"):
        overlaps("10.0.0.0/24", "nope")


@pytest.mark.parametrize(
    ("subnet", "routes", "overlapping"),
    [
        ("10.0.0.0/24", ["10.0.0.0/16"], "10.0.0.0/16"),
        ("10.0.0.0/16", ["192.168.1.0/24", "10.0.200.0/24"], "10.0.200.0/24"),
        ("172.16.0.0/24", ["172.16.0.17/24"], "172.16.0.17/24"),  # interface route
    ],
)
def test_validate_subnet_free_conflict_names_route(
    subnet: str, routes: list[str], overlapping: str
) -> None:
    with pytest.raises(Conflict, match=f"overlaps the existing route {overlapping}$"):
        validate_subnet_free(subnet, routes)


@pytest.mark.parametrize(
    "routes",
    [
        [],
        ["10.1.0.0/24", "192.168.0.0/16"],
        ["default", "0.0.0.0/0"],  # the default route overlaps everything; ignored
        ["fd00::/8"],
    ],
)
def test_validate_subnet_free_ok(routes: list[str]) -> None:
    validate_subnet_free("10.0.0.0/24", routes)  # must not raise


def test_validate_subnet_free_rejects_bad_route() -> None:
    with pytest.raises(InvalidRequest, match="route 'bogus' is not a valid CIDR"):
        validate_subnet_free("10.0.0.0/24", ["bogus"])
