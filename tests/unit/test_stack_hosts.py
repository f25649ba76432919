"""Service discovery of stacks in /etc/hosts (agent/hostfiles.render_hosts): a replica names
every replica of its own stack by service, one line each; instances outside the stack, and
replicas of another stack with the same service names, get no service names."""

from __future__ import annotations

from dockyard.agent.hostfiles import render_hosts
from dockyard.model.agent import DesiredInstance, DesiredNetwork, Peer
from dockyard.model.instance import DesiredState, Limits


def instance(ip: str, name: str, peers: list[Peer]) -> DesiredInstance:
    net = DesiredNetwork(id="n1", name="default", bridge="dybn1", subnet="10.0.0.0/24",
                         gateway="10.0.0.1", peers=peers)
    return DesiredInstance(
        id="i", name=name, project="default", generation=1, desired_state=DesiredState.running,
        restart_serial=0, image="img", hostname=name, network=net, ip=ip, prefixlen=24,
        mac="02:00:00:00:00:01", dns=["10.0.0.1"], limits=Limits(), volumes=[], env={},
        revision=1)


PEERS = [
    Peer(ip="10.0.0.2", hostname="shop-web-1", name="shop-web-1", stack="s1", service="web"),
    Peer(ip="10.0.0.3", hostname="shop-web-2", name="shop-web-2", stack="s1", service="web"),
    Peer(ip="10.0.0.4", hostname="shop-db-1", name="shop-db-1", stack="s1", service="db"),
    Peer(ip="10.0.0.5", hostname="blog-web-1", name="blog-web-1", stack="s2", service="web"),
    Peer(ip="10.0.0.6", hostname="alone", name="alone"),
]


def test_a_replica_names_its_stack_services() -> None:
    assert render_hosts(instance("10.0.0.4", "shop-db-1", PEERS)).splitlines()[2:] == [
        "10.0.0.4\tshop-db-1 db",
        "10.0.0.2\tshop-web-1 web",
        "10.0.0.3\tshop-web-2 web",
        "10.0.0.5\tblog-web-1",
        "10.0.0.6\talone"]


def test_an_instance_outside_stacks_sees_no_service_names() -> None:
    assert render_hosts(instance("10.0.0.6", "alone", PEERS)).splitlines()[2:] == [
        "10.0.0.6\talone", "10.0.0.2\tshop-web-1", "10.0.0.3\tshop-web-2",
        "10.0.0.4\tshop-db-1", "10.0.0.5\tblog-web-1"]


def test_a_hostname_equal_to_the_service_is_not_repeated() -> None:
    peers = [Peer(ip="10.0.0.2", hostname="web", name="shop-web-1", stack="s1",
                  service="web"),
             Peer(ip="10.0.0.3", hostname="web", name="shop-web-2", stack="s1",
                  service="web")]
    assert render_hosts(instance("10.0.0.3", "shop-web-2", peers)).splitlines()[2:] == [
        "10.0.0.3\tshop-web-2 web", "10.0.0.2\tweb shop-web-1"]
