"""Checks across services, and the first-start order.

* `depends_on` names a service of the stack; the graph has no cycle (the cycle is named,
  `a -> b -> a`); `start_order` is a topological order (ties by name: deterministic);
* a service is on one network (an instance has one interface), declared at the top level
  (`default` is implicit);
* an `ipv4_address` belongs to one replica: not on a service with replicas > 1, not twice on
  one network, and inside the network's subnet when the stack gives one.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Mapping

from dockyard.compose.build import Problems
from dockyard.model.stack import ServiceSpec, StackNetwork


def check_services(services: Mapping[str, ServiceSpec], networks: Mapping[str, StackNetwork],
                   problems: Problems) -> None:
    for name, svc in services.items():
        for dep in svc.depends_on:
            if dep not in services:
                problems.add(("services", name, "depends_on", dep), "no such service")
        if len(svc.networks) > 1:
            problems.add(("services", name, "networks"), "one network per service (a "
                         "Dockyard instance has one interface)")
        for net in svc.networks:
            if net.name != "default" and net.name not in networks:
                problems.add(("services", name, "networks", net.name),
                             "not declared in the top-level networks")
    _check_addresses(services, networks, problems)
    cycle = find_cycle({name: [d for d in svc.depends_on if d in services]
                        for name, svc in services.items()})
    if cycle:
        problems.add(("services", cycle[0], "depends_on"),
                     "dependency cycle: " + " -> ".join(cycle))


def _check_addresses(services: Mapping[str, ServiceSpec],
                     networks: Mapping[str, StackNetwork], problems: Problems) -> None:
    owner: dict[tuple[str, str], str] = {}
    for name in sorted(services):
        svc = services[name]
        for net in svc.networks:
            if net.ipv4_address is None:
                continue
            where = ("services", name, "networks", net.name, "ipv4_address")
            try:
                address = ipaddress.IPv4Address(net.ipv4_address)
            except ValueError:
                problems.add(where, f"{net.ipv4_address!r} is not an IPv4 address")
                continue
            if svc.replicas > 1:
                problems.add(where, f"a fixed address needs replicas <= 1 (replicas: "
                                    f"{svc.replicas})")
            stack_net = networks.get(net.name)
            if stack_net is not None and stack_net.subnet is not None and \
                    address not in ipaddress.IPv4Network(stack_net.subnet, strict=False):
                problems.add(where, f"{address} is not in the network's subnet "
                                    f"{stack_net.subnet}")
            key = (net.name, str(address))
            if key in owner:
                problems.add(where, f"{address} is also the address of service {owner[key]}")
            else:
                owner[key] = name


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """One dependency cycle as `[a, b, …, a]` (the first found in name order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, [])):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def start_order(graph: Mapping[str, list[str]]) -> tuple[str, ...]:
    """Services so that each comes after what it depends on; among the ready ones, by name.
    The graph must be acyclic (`find_cycle` first)."""
    waiting = {node: len(set(deps)) for node, deps in graph.items()}
    users: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in set(deps):
            users[dep].append(node)
    ready = [node for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for user in users[node]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    return tuple(order)
