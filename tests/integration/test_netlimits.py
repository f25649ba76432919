"""Network IO limits through Dockyard: `--ingress/--egress 50mbit` hold in both directions
between two instances on the default bridge, change live, survive a restart (the veth is new)
and are removed with `resize … 0`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard, pid_of
from tests.integration.iperf import received_bps
from tests.integration.test_tc import network_lock  # noqa: F401 (a fixture)

LIMIT = 50_000_000


@pytest.fixture
def pair(dy: Dockyard, network_lock: None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:  # noqa: F811
    a = dy.ok("launch", IMAGE, "shaped", "--ingress", "50mbit", "--egress", "50mbit",
              "--json").json()
    b = dy.ok("launch", IMAGE, "peer", "--json").json()
    try:
        yield a, b
    finally:
        dy.cli("delete", "shaped", "--force")
        dy.cli("delete", "peer", "--force")


def rates(a: dict[str, Any], b: dict[str, Any], egress: bool = True,
          seconds: int = 3) -> tuple[float, float]:
    """(to the instance, from the instance) in units of LIMIT, each over `seconds`; without
    `egress` the second is not measured (nan)."""
    pa, pb = pid_of(a["container_id"]), pid_of(b["container_id"])
    to_a = received_bps(pa, a["ip"], pb, reverse=False, seconds=seconds) / LIMIT
    from_a = received_bps(pa, a["ip"], pb, reverse=True, seconds=seconds) / LIMIT \
        if egress else float("nan")
    return to_a, from_a


def test_ingress_and_egress_hold_change_live_and_go(dy: Dockyard, pair: Any) -> None:
    a, b = pair
    to_a, from_a = rates(a, b)
    assert 0.80 <= to_a <= 1.10, to_a
    assert 0.80 <= from_a <= 1.10, from_a
    pid = pid_of(a["container_id"])
    dy.ok("resize", "shaped", "--ingress", "20mbit")
    to_a, _ = rates(a, b, egress=False)
    assert 0.32 <= to_a <= 0.44, to_a  # 20 mbit = 0.4 of 50
    assert pid_of(a["container_id"]) == pid
    dy.ok("restart", "shaped")  # a new veth: the limits are put back on it
    to_a, from_a = rates(a, b)
    assert 0.32 <= to_a <= 0.44 and 0.80 <= from_a <= 1.10, (to_a, from_a)
    dy.ok("resize", "shaped", "--ingress", "0", "--egress", "0")
    to_a, from_a = rates(a, b, seconds=1)  # over 5 × the limit shows within a second
    assert to_a > 5 and from_a > 5, (to_a, from_a)
