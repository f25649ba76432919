"""The HTTP entrance of stacks: published services → routes → an haproxy.cfg. Pure.

    Published(service with `x-dockyard.http`, its replicas)
      ─▶ routes(published): Host → the replicas that `serving` lets in, at ip:port
         (a Host claimed twice: the first by (project, stack, service) wins; a Host that is
         not a DNS name is left out rather than written into the configuration)
      ─▶ render(routes, listen): the whole haproxy.cfg, byte-identical for the same routes
         (everything sorted), so "unchanged" is a string comparison and needs no reload
      ─▶ digest(routes): what the agent sends back to be told only of a change

The configuration makes a replica that goes away cost no request: a request whose connection
fails, is refused, or gets no (or a broken) answer is sent again to another replica
(`retry-on all-retryable-errors`, `retries`, `option redispatch 1`); health checks take a dead
replica out within about a second; a reload (adapters/haproxy.py) lets the old worker finish
the requests it holds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

# a Host as the entrance matches it: DNS labels joined by dots, lower-case (RFC 1123)
_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                      r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_LISTEN_RE = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\*|)?:\d{1,5}$")
_SERVER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

CHECK_INTERVAL_MS = 500  # a replica that stopped answering is out after `fall` of these
RETRIES = 3


class Backend(BaseModel):
    """One replica that receives traffic: its instance name, address, the service port and
    the network (id) the address is on."""

    model_config = ConfigDict(frozen=True)
    name: str
    ip: str
    port: int
    network: str = ""


class Route(BaseModel):
    """Requests whose Host is `host` go to `backends` (the replicas of project/stack/service)."""

    model_config = ConfigDict(frozen=True)
    host: str
    project: str
    stack: str
    service: str
    backends: tuple[Backend, ...]


class Leg(BaseModel):
    """The entrance host's own address on a network its routes reach (agent/entrance.py):
    `address` (IP/LEN) in the entrance's namespace, a port of `bridge`."""

    model_config = ConfigDict(frozen=True)
    network: str
    bridge: str
    address: str


class EntranceRoutes(BaseModel):
    """`GET /v1/agent/entrance`: every route of the cluster and their digest, and the asking
    host's legs into the routes' networks (one address each, kept while the network lives)."""

    digest: str
    routes: list[Route]
    legs: list[Leg] = []


@dataclass(frozen=True)
class Replica:
    """A replica as the store reports it (state None: no live instance)."""

    name: str
    state: str | None
    ip: str | None
    health: str = "none"  # dockerd's health of its container: none (no healthcheck), starting,
    #                       healthy, unhealthy
    network: str = ""  # the network (id) `ip` is on


@dataclass(frozen=True)
class Published:
    """A service with `x-dockyard: {http: {host, port}}` and its replicas."""

    project: str
    stack: str
    service: str
    host: str
    port: int
    replicas: tuple[Replica, ...]


@dataclass(frozen=True)
class Claim:
    """A Host a stored stack's service publishes (`project`: the project's id)."""

    project: str
    stack: str
    service: str
    host: str


def clashes(project: str, stack: str, wanted: Mapping[str, str],
            claimed: Iterable[Claim]) -> list[str]:
    """Why the stack `project/stack` may not publish `wanted` (service → Host): a Host that
    two of its services claim, or that another stack already publishes (Hosts match
    case-insensitively, as the entrance routes them). A stack of another project is not
    named (the entrance is shared, the stack's name is not)."""
    problems: list[str] = []
    mine: dict[str, str] = {}
    for service, host in sorted(wanted.items()):
        key = host.lower()
        if key in mine:
            problems.append(f"services.{service}.x-dockyard.http.host: {key} is also "
                            f"published by service {mine[key]} of this stack")
        mine.setdefault(key, service)
    for other in sorted(claimed, key=lambda c: (c.project, c.stack, c.service)):
        key = other.host.lower()
        if key not in mine or (other.project, other.stack) == (project, stack):
            continue
        owner = (f"stack {other.stack} (service {other.service})" if other.project == project
                 else "a stack of another project")
        problems.append(f"services.{mine.pop(key)}.x-dockyard.http.host: {key} is already "
                        f"published by {owner}")
    return problems


def serving(replica: Replica) -> bool:
    """Whether a replica receives traffic: THE one predicate of the entrance. A running
    instance with an address whose healthcheck passes, or that has none: a replica still
    `starting` (inside its start period) or `unhealthy` gets no request."""
    return (replica.state == "running" and bool(replica.ip)
            and replica.health in ("healthy", "none"))


def routes(published: Iterable[Published]) -> list[Route]:
    """The routes, sorted by host; each host once (the first claim by project, stack,
    service); hosts that are not DNS names are left out."""
    out: dict[str, Route] = {}
    for pub in sorted(published, key=lambda p: (p.project, p.stack, p.service)):
        host = pub.host.lower()
        if host in out or not _HOST_RE.match(host):
            continue
        backends = tuple(sorted(
            (Backend(name=r.name, ip=r.ip, port=pub.port, network=r.network)
             for r in pub.replicas if serving(r) and r.ip is not None),
            key=lambda b: b.name))
        out[host] = Route(host=host, project=pub.project, stack=pub.stack,
                          service=pub.service, backends=backends)
    return [out[host] for host in sorted(out)]


def networks(found: Iterable[Route]) -> set[str]:
    """The networks the routes' replicas are on: those an entrance needs a leg into."""
    return {b.network for route in found for b in route.backends if b.network}


def digest(found: Sequence[Route]) -> str:
    body = "\n".join(route.model_dump_json() for route in found)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def render(found: Sequence[Route], listen: str, listen_namespace: str | None = None) -> str:
    """haproxy.cfg for `routes` on `listen` (HOST:PORT; HOST empty or `*`: every address),
    that address in the network namespace `listen_namespace` (None: HAProxy's own; the
    entrance runs HAProxy in a namespace of its own and listens in the host's:
    agent/entrance.py). Raises ValueError for a listen address or a route it must not
    write."""
    if not _LISTEN_RE.match(listen):
        raise ValueError(f"entrance listen address {listen!r} is not IPv4:PORT")
    if listen_namespace is not None and not _SERVER_RE.match(listen_namespace):
        raise ValueError(f"network namespace {listen_namespace!r} cannot be written")
    in_ns = f" namespace {listen_namespace}" if listen_namespace else ""
    lines = [
        "# Written by the Dockyard agent (stacks/entrance.py); rewritten on every change.",
        "global",
        "    log stderr format short local0 notice",
        "    hard-stop-after 60s",  # an old worker ends its last requests within this
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect 1s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 10s",
        # a request that meets a replica going away is sent again, to another replica
        f"    retries {RETRIES}",
        "    retry-on all-retryable-errors",
        "    option redispatch 1",
        "    http-reuse safe",
        f"    default-server inter {CHECK_INTERVAL_MS}ms fastinter {CHECK_INTERVAL_MS}ms "
        "downinter 500ms rise 1 fall 2",
        "",
        "frontend entrance",
        f"    bind {listen}{in_ns}",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
    ]
    names = _backend_names(found)
    for route in found:
        lines.append(f"    use_backend {names[route.host]} if "
                     f"{{ var(txn.host) -m str {route.host} }}")
    lines += ["    default_backend no_such_host", "",
              "backend no_such_host",
              '    http-request return status 404 content-type text/plain '
              'string "no service has this Host\\n"']
    for route in found:
        lines += ["", f"backend {names[route.host]}",
                  f"    # {route.project}/{route.stack}/{route.service}",
                  "    balance roundrobin"]
        if not route.backends:
            lines.append('    http-request return status 503 content-type text/plain '
                         'string "no replica of this service is serving\\n"')
        for b in route.backends:
            if not _SERVER_RE.match(b.name) or not re.fullmatch(r"[0-9.]+", b.ip):
                raise ValueError(f"replica {b.name!r} at {b.ip!r} cannot be written")
            lines.append(f"    server {b.name} {b.ip}:{b.port} check")
    return "\n".join(lines) + "\n"


def _backend_names(found: Sequence[Route]) -> dict[str, str]:
    names = {}
    for route in found:
        if not _HOST_RE.match(route.host):
            raise ValueError(f"route host {route.host!r} is not a DNS name")
        names[route.host] = f"host_{route.host}"
    return names
