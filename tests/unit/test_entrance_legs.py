"""The entrance hosts' own addresses on the networks their routes reach (`legs`), on a real
SQLite store: allocated from the network's ledger once per (host, network) and then kept, never
an address an instance holds (nor one an instance can take after), released when the network
or the host goes; the routes name the networks through their replicas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from dockyard import ipam
from dockyard.errors import PoolExhausted
from dockyard.model.network import NetworkCreate
from dockyard.server.context import ServerContext
from dockyard.server.entrance import legs
from dockyard.stacks.entrance import Leg, Published, Replica, Route, routes
from dockyard.store import hosts, ledger, networks
from dockyard.store.tables import IpAllocationRow, NetworkRow
from tests.unit.test_stack_reconciler import ctx  # noqa: F401  (fixture)


@pytest.fixture
def cluster(ctx: ServerContext) -> Iterator[ServerContext]:  # noqa: F811
    with ctx.db.session() as sess:
        project = str(sess.scalar(select(NetworkRow.project_id)))
        for name in ("edge1", "edge2"):
            hosts.add(sess, name, {})
        back = NetworkCreate.model_validate({"name": "back", "subnet": "10.7.0.0/29"})
        networks.create(sess, project, back)
        ledger.reserve_ip(sess, "n1", "10.0.0.2", "instance1")  # an instance on `default`
    yield ctx


def found(*nets: str) -> list[Route]:
    return routes([Published("p", "s", f"svc{i}", f"svc{i}.example", 80,
                             (Replica(f"s-svc{i}-1", "running", "10.0.0.9", network=net),))
                   for i, net in enumerate(nets)])


def net_id(context: ServerContext, name: str) -> str:
    with context.db.read() as sess:
        return str(sess.scalar(select(NetworkRow.id).where(NetworkRow.name == name)))


def test_a_leg_is_allocated_once_per_host_and_network_and_kept(cluster: ServerContext) -> None:
    back = net_id(cluster, "back")
    first = legs(cluster, "edge1", found("n1", back))
    assert first == [Leg(network=n, bridge=b, address=a) for n, b, a in sorted(
        [("n1", "dybn1", "10.0.0.3/24"), (back, f"dyb{back}", "10.7.0.2/29")])]
    assert legs(cluster, "edge1", found("n1", back)) == first  # asked again: the same
    other = legs(cluster, "edge2", found("n1"))
    assert other == [Leg(network="n1", bridge="dybn1", address="10.0.0.4/24")]
    assert legs(cluster, "edge1", found("n1")) == [leg for leg in first if leg.network == "n1"]
    # an instance placed now cannot get a leg's address
    with cluster.db.read() as sess:
        used = ledger.used_ips(sess, "n1")
    assert {"10.0.0.2", "10.0.0.3", "10.0.0.4"} <= used
    assert ipam.allocate("10.0.0.0/24", "10.0.0.1", used) == "10.0.0.5"


def test_no_routes_no_legs_and_an_unknown_host_gets_none(cluster: ServerContext) -> None:
    assert legs(cluster, "edge1", found()) == []
    assert legs(cluster, "nosuchhost", found("n1")) == []
    with cluster.db.read() as sess:
        assert ledger.entrance_legs(sess, "nosuchhost") == {}


def test_legs_go_with_their_network_and_their_host(cluster: ServerContext) -> None:
    back = net_id(cluster, "back")
    legs(cluster, "edge1", found("n1", back))
    legs(cluster, "edge2", found("n1", back))
    with cluster.db.session() as sess:
        row = sess.get(NetworkRow, back)
        assert row is not None
        networks.delete(sess, row)
    with cluster.db.session() as sess:
        edge2 = hosts.by_name(sess, "edge2")
        assert edge2 is not None
        hosts.delete(sess, edge2)
    with cluster.db.read() as sess:
        left = sorted((r.network_id, r.ip, r.instance_id)
                      for r in sess.scalars(select(IpAllocationRow)))
        edge1 = hosts.by_name(sess, "edge1")
        assert edge1 is not None
    assert left == [("n1", "10.0.0.2", "instance1"), ("n1", "10.0.0.3", "entrance:" + edge1.id)]


def test_a_full_network_is_a_clear_error(cluster: ServerContext) -> None:
    """/29 behind the gateway: 5 addresses; the sixth asker finds none."""
    back = net_id(cluster, "back")
    with cluster.db.session() as sess:
        for i in range(2, 7):
            ledger.reserve_ip(sess, back, f"10.7.0.{i}", f"inst{i}")
    with pytest.raises(PoolExhausted):
        legs(cluster, "edge1", found(back))
