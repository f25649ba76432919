"""The HTTP entrance, pure: published services → routes (who serves, host claims) → haproxy.cfg
(deterministic, retries and checks in place); the agent's loop against a fake proxy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters.haproxy import HAProxy
from dockyard.agent.entrance import Entrance
from dockyard.errors import InvalidRequest
from dockyard.stacks.entrance import (
    Backend,
    Claim,
    EntranceRoutes,
    Leg,
    Published,
    Replica,
    Route,
    clashes,
    digest,
    networks,
    render,
    routes,
)


def pub(stack: str, service: str, host: str, *replicas: Replica, project: str = "default",
        port: int = 8080) -> Published:
    return Published(project, stack, service, host, port, tuple(replicas))


RUN1 = Replica("shop-web-1", "running", "10.1.0.11")
RUN2 = Replica("shop-web-2", "running", "10.1.0.12")


@pytest.mark.parametrize(("published", "expected"), [
    ([], []),
    # only running replicas with an address serve; sorted by name
    ([pub("shop", "web", "shop.example", RUN2, Replica("shop-web-3", "creating", "10.1.0.13"),
          Replica("shop-web-4", "stopped", "10.1.0.14"), Replica("shop-web-5", "error", None),
          Replica("shop-web-6", "running", None), RUN1)],
     [("shop.example", ["shop-web-1", "shop-web-2"])]),
    # health: a replica whose healthcheck has not passed yet, or failed, gets no request
    ([pub("shop", "web", "shop.example", Replica("shop-web-1", "running", "10.1.0.11", "healthy"),
          Replica("shop-web-2", "running", "10.1.0.12", "starting"),
          Replica("shop-web-3", "running", "10.1.0.13", "unhealthy"),
          Replica("shop-web-4", "running", "10.1.0.14", "none"))],
     [("shop.example", ["shop-web-1", "shop-web-4"])]),
    # a service without a serving replica keeps its route (answered 503, not "no such host")
    ([pub("shop", "web", "shop.example", Replica("shop-web-1", "starting", "10.1.0.11"))],
     [("shop.example", [])]),
    # hosts are matched lower-case and sorted
    ([pub("b", "web", "B.Example", RUN1), pub("a", "web", "a.example", RUN2)],
     [("a.example", ["shop-web-2"]), ("b.example", ["shop-web-1"])]),
    # a host claimed twice: the first by (project, stack, service) wins
    ([pub("zeta", "web", "x.example", RUN1), pub("alpha", "web", "x.example", RUN2)],
     [("x.example", ["shop-web-2"])]),
    ([pub("s", "web", "x.example", RUN1, project="p2"),
      pub("s", "web", "x.example", RUN2, project="p1")],
     [("x.example", ["shop-web-2"])]),
    # what is not a DNS name is never written into the configuration
    ([pub("s", "a", "x.example\n    bind :1", RUN1), pub("s", "b", "-x.example", RUN1),
      pub("s", "c", "a..b", RUN1), pub("s", "d", "x" * 64 + ".example", RUN1)], []),
])
def test_routes(published: list[Published], expected: list[tuple[str, list[str]]]) -> None:
    found = routes(published)
    assert [(r.host, [b.name for b in r.backends]) for r in found] == expected


CLAIMED = [Claim("p1", "shop", "web", "Shop.Example"), Claim("p2", "blog", "www", "blog.example")]


@pytest.mark.parametrize(("stack", "wanted", "expected"), [
    ("new", {"web": "other.example"}, []),
    ("shop", {"web": "shop.example", "api": "api.example"}, []),  # its own claim
    ("new", {"front": "SHOP.example"}, ["services.front.x-dockyard.http.host: shop.example is "
                                        "already published by stack shop (service web)"]),
    ("new", {"web": "blog.example"}, ["services.web.x-dockyard.http.host: blog.example is "
                                      "already published by a stack of another project"]),
    ("shop", {"a": "x.example", "b": "X.example"}, ["services.b.x-dockyard.http.host: "
                                                    "x.example is also published by service "
                                                    "a of this stack"]),
])
def test_clashes(stack: str, wanted: dict[str, str], expected: list[str]) -> None:
    assert clashes("p1", stack, wanted, CLAIMED) == expected


def test_routes_carry_the_service_port() -> None:
    [route] = routes([pub("shop", "web", "shop.example", RUN1, port=3000)])
    assert route.backends == (Backend(name="shop-web-1", ip="10.1.0.11", port=3000),)
    assert (route.project, route.stack, route.service) == ("default", "shop", "web")


def test_render_is_deterministic_and_digest_follows_the_routes() -> None:
    one = routes([pub("a", "web", "a.example", RUN1, RUN2), pub("b", "api", "b.example", RUN1)])
    two = routes([pub("b", "api", "b.example", RUN1), pub("a", "web", "a.example", RUN2, RUN1)])
    assert render(one, ":8080") == render(two, ":8080")
    assert digest(one) == digest(two)
    fewer = routes([pub("a", "web", "a.example", RUN1), pub("b", "api", "b.example", RUN1)])
    assert digest(fewer) != digest(one) and render(fewer, ":8080") != render(one, ":8080")


def test_render_routes_by_host_to_checked_servers_with_retries() -> None:
    found = routes([pub("shop", "web", "shop.example", RUN1, RUN2),
                    pub("shop", "idle", "idle.example")])
    cfg = render(found, "127.0.0.1:18080")
    lines = [line.strip() for line in cfg.splitlines()]
    assert "bind 127.0.0.1:18080" in lines
    assert "use_backend host_shop.example if { var(txn.host) -m str shop.example }" in lines
    assert "http-request set-var(txn.host) req.hdr(host),field(1,:),lower" in lines
    backend = cfg.split("backend host_shop.example\n", 1)[1].split("\n\n", 1)[0]
    assert "server shop-web-1 10.1.0.11:8080 check" in backend
    assert "server shop-web-2 10.1.0.12:8080 check" in backend
    for needed in ("retry-on all-retryable-errors", "retries 3", "option redispatch 1",
                   "http-reuse safe", "timeout connect 1s", "default_backend no_such_host"):
        assert needed in lines, needed
    idle = cfg.split("backend host_idle.example\n", 1)[1].split("\n\n", 1)[0]
    assert "http-request return status 503" in idle and "server " not in idle


@pytest.mark.parametrize("listen", ["8080", "host:8080", "1.2.3.4:80\nbind :1", ""])
def test_render_refuses_a_bad_listen_address(listen: str) -> None:
    with pytest.raises(ValueError, match="listen"):
        render([], listen)


def test_render_refuses_a_route_it_must_not_write() -> None:
    bad = Route(host="a.example", project="p", stack="s", service="w",
                backends=(Backend(name="x y", ip="10.0.0.1", port=80),))
    with pytest.raises(ValueError, match="cannot be written"):
        render([bad], ":8080")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_what_render_writes_and_refuses_garbage(tmp_path: Path) -> None:
    """The real `haproxy -c` (no process is started)."""
    found = routes([pub("shop", "web", "shop.example", RUN1, RUN2),
                    pub("shop", "idle", "idle.example")])
    proxy = HAProxy(tmp_path)
    proxy.check(render(found, "127.0.0.1:18080"))
    with pytest.raises(InvalidRequest, match="haproxy refuses"):
        proxy.check(render(found, "127.0.0.1:18080") + "backend broken\n    nonsense 1\n")
    assert not proxy.config_path.exists()
    proc = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=True)
    assert "HAProxy version" in proc.stdout


class FakeProxy:
    """adapters.haproxy.HAProxy's seam: what was applied, whether a master 'runs'."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.running = False

    def master_pid(self) -> int | None:
        return 1 if self.running else None

    inside = True  # whether the running master is in the entrance's namespace
    stopped = 0

    def in_its_netns(self, pid: int) -> bool:
        return self.inside

    def stop(self) -> None:
        self.stopped += 1
        self.running = False

    def apply(self, config: str) -> bool:
        if self.running and self.applied and self.applied[-1] == config:
            return False
        self.applied.append(config)
        self.running = True
        return True


class FakeLegs:
    """agent.entrance.Legs's seam: the legs each apply was given."""

    netns, host = "dyetest", "dyotest"

    def __init__(self) -> None:
        self.applied: list[list[Leg]] = []

    def apply(self, wanted: list[Leg]) -> None:
        self.applied.append(list(wanted))


class FakeClient:
    def __init__(self, replies: list[EntranceRoutes]) -> None:
        self.replies = replies
        self.asked: list[str] = []

    def request(self, method: str, path: str, params: dict[str, Any],
                timeout: float) -> dict[str, Any]:
        assert (method, path) == ("GET", "/v1/agent/entrance")
        self.asked.append(params["known"])
        return self.replies.pop(0).model_dump(mode="json")


def test_agent_applies_a_change_once_and_restarts_a_dead_proxy() -> None:
    first = routes([pub("shop", "web", "shop.example", RUN1)])
    second = routes([pub("shop", "web", "shop.example", RUN1, RUN2)])
    replies = [EntranceRoutes(digest=digest(r), routes=r) for r in (first, first, second,
                                                                    second)]
    client, proxy, legs = FakeClient(replies), FakeProxy(), FakeLegs()
    entrance = Entrance(client, ":8080", Path("/nonexistent"), proxy,  # type: ignore[arg-type]
                        legs)  # type: ignore[arg-type]
    assert entrance.once() is True
    assert entrance.once() is False  # same routes: no reload
    assert entrance.once() is True and len(proxy.applied) == 2
    proxy.running = False  # HAProxy died: asked without a digest, so answered at once
    assert entrance.once() is True
    assert client.asked == ["", digest(first), digest(first), ""]
    assert "server shop-web-2" in proxy.applied[-1]
    assert "bind :8080 namespace dyotest" in proxy.applied[-1] and len(legs.applied) == 4


def test_an_haproxy_outside_the_entrance_namespace_is_started_again_in_it() -> None:
    """An agent from before the legs left HAProxy in the host's namespace: the next one stops
    it and starts it where its connections reach every host."""
    found = routes([pub("shop", "web", "shop.example", RUN1)])
    replies = [EntranceRoutes(digest=digest(found), routes=found) for _ in range(2)]
    client, proxy, legs = FakeClient(replies), FakeProxy(), FakeLegs()
    proxy.running, proxy.inside = True, False
    proxy.applied.append("the old configuration")
    entrance = Entrance(client, ":8080", Path("/nonexistent"), proxy,  # type: ignore[arg-type]
                        legs)  # type: ignore[arg-type]
    assert entrance.once() is True and proxy.stopped == 1
    assert client.asked == [""]  # asked without a digest: answered at once
    proxy.inside = True
    assert entrance.once() is False and proxy.stopped == 1


def test_agent_makes_the_legs_it_is_given_before_haproxy_reads_them() -> None:
    found = routes([pub("shop", "web", "shop.example", RUN1)])
    leg = Leg(network="n1", bridge="dybn1", address="10.1.0.250/24")
    order: list[str] = []
    proxy, legs = FakeProxy(), FakeLegs()
    legs.apply = lambda wanted: order.append(f"legs {wanted}")  # type: ignore[method-assign]
    proxy.apply = lambda config: order.append("haproxy") or True  # type: ignore[method-assign]
    client = FakeClient([EntranceRoutes(digest=digest(found), routes=found, legs=[leg])])
    Entrance(client, ":8080", Path("/nonexistent"), proxy, legs).once()  # type: ignore[arg-type]
    assert order == [f"legs {[leg]}", "haproxy"]


def test_render_listens_in_the_hosts_namespace() -> None:
    found = routes([pub("shop", "web", "shop.example", RUN1, RUN2)])
    cfg = render(found, "10.0.0.5:8080", "dyo0123456789")
    lines = [line.strip() for line in cfg.splitlines()]
    assert "bind 10.0.0.5:8080 namespace dyo0123456789" in lines
    assert "server shop-web-1 10.1.0.11:8080 check" in lines  # from HAProxy's own
    assert "namespace" not in render(found, ":8080")
    with pytest.raises(ValueError, match="namespace"):
        render(found, ":8080", "x\n    bind :1")


def test_routes_name_the_networks_an_entrance_needs_a_leg_into() -> None:
    on_a = Replica("s-web-1", "running", "10.1.0.11", network="neta")
    on_b = Replica("s-api-1", "running", "10.2.0.11", network="netb")
    off = Replica("s-api-2", "stopped", "10.3.0.11", network="netc")  # serves nothing
    found = routes([pub("s", "web", "web.example", on_a), pub("s", "api", "api.example", on_b,
                                                              off)])
    assert networks(found) == {"neta", "netb"}
    assert [b.network for r in found for b in r.backends] == ["netb", "neta"]
