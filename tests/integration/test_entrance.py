"""The stacks' HTTP entrance with the real HAProxy (issue #12 item 5): the adapter checks a
configuration before using it and reloads gracefully; a Dockyard whose agent runs the entrance
(`dockyard up --entrance`) publishes a stack's `x-dockyard.http` service by its Host header
over its running replicas (busybox httpd answering its hostname), and a client sending a
request every 20 ms while the service is scaled down and up again sees no failed request.
Every HAProxy started here is killed by PID at teardown."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.adapters import legs
from dockyard.adapters.haproxy import HAProxy
from dockyard.agent.entrance import host_name, netns_name, remove
from dockyard.errors import InvalidRequest
from dockyard.stacks.entrance import Published, render, routes
from tests.integration.dockyard_env import IMAGE, Dockyard, free_port, leaks, make_dockyard

HOST = "app.example"
COMPOSE = f"""
services:
  web:
    image: {IMAGE}
    deploy: {{replicas: 3}}
    x-dockyard:
      http: {{host: {HOST}, port: 8080}}
"""
SERVE = "mkdir -p /www && hostname > /www/index.html && httpd -p 8080 -h /www"


def _family(master: int) -> list[int]:
    """`master` and its children (HAProxy's workers, old and new)."""
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry))
    return pids


def _kill(proxy: HAProxy) -> None:
    """Kill the master of `proxy` and its workers by PID (teardown)."""
    pid = proxy.master_pid()
    if pid is None:
        return
    for member in _family(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while proxy.master_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def get(port: int, host: str, timeout: float = 5.0,
        address: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host, "Connection": "close"})
        reply = conn.getresponse()
        return reply.status, reply.read().decode(errors="replace").strip()
    finally:
        conn.close()


def until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_adapter_checks_then_starts_reloads_and_stops(tmp_path: Path) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    idle = routes([Published("p", "s", "web", "idle.example", 80, ())])
    proxy = HAProxy(tmp_path / "entrance")
    try:
        assert proxy.apply(render([], listen)) is True
        master = proxy.master_pid()
        assert master is not None
        until("the listener", lambda: _answers(port, "x.example") == 404)
        assert proxy.apply(render([], listen)) is False  # same bytes: nothing done

        running = proxy.config_path.read_text()
        with pytest.raises(InvalidRequest, match="haproxy refuses"):
            proxy.apply(running.replace("balance", "nonsense") + "frontend x\n    bogus\n")
        assert proxy.config_path.read_text() == running and proxy.master_pid() == master

        assert proxy.apply(render(idle, listen)) is True  # a graceful reload, same master
        until("the reloaded worker", lambda: _answers(port, "idle.example") == 503)
        assert proxy.master_pid() == master and _answers(port, "x.example") == 404

        restarted = HAProxy(tmp_path / "entrance")  # another agent finds it by its pid file
        assert restarted.master_pid() == master
        assert restarted.apply(render(idle, listen)) is False
        restarted.stop()
        assert proxy.master_pid() is None and _answers(port, "x.example") is None
    finally:
        _kill(proxy)


def _body(port: int, host: str = HOST, address: str = "127.0.0.1") -> str:
    """The answer of a replica through the entrance, "" for anything else."""
    try:
        status, body = get(port, host, timeout=2, address=address)
    except OSError:
        return ""
    return body if status == 200 else ""


def _answers(port: int, host: str) -> int | None:
    try:
        return get(port, host, timeout=2)[0]
    except OSError:
        return None


@dataclass
class Client:
    """GET every 20 ms with the entrance's Host, each on a new connection; every answer kept."""

    port: int
    host: str = HOST
    address: str = "127.0.0.1"
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                status, body = get(self.port, self.host, address=self.address)
                self.answers.append((started, status, body))
                if status != 200:
                    self.failures.append(f"{started:.2f} {status}: {body[:30]}")
            except OSError as exc:
                self.failures.append(f"{started:.2f} {exc!r}")
            self.stopping.wait(max(0.0, 0.02 - (time.monotonic() - started)))

    def served_since(self, moment: float) -> set[str]:
        return {body for started, status, body in list(self.answers)
                if started >= moment and status == 200}


@contextlib.contextmanager
def with_entrance() -> Iterator[tuple[Dockyard, int]]:
    """A Dockyard whose agent runs the entrance on its own port (also test_build_delivery)."""
    port = free_port()
    env = make_dockyard()
    env.up_args = ["--entrance", f"127.0.0.1:{port}"]
    proxy = HAProxy(env.home / "agent" / "entrance")
    try:
        env.start()
        yield env, port
    finally:
        env.stop()  # the agent leaves HAProxy and its namespace (by design): removed here
        _kill(proxy)
        remove(env.home / "agent")  # the entrance's namespace and legs, the host's name
        env.cleanup()


@pytest.fixture(scope="module")
def edge() -> Iterator[tuple[Dockyard, int]]:
    with with_entrance() as running:
        yield running


def _serve(env: Dockyard, *names: str) -> None:
    with env.api() as api:
        for name in names:
            done = api.post(f"/v1/instances/{name}/exec", {"command": ["sh", "-c", SERVE]})
            assert done["exit_code"] == 0, done


def test_a_stack_behind_the_entrance_loses_no_request_when_scaled(
        edge: tuple[Dockyard, int], tmp_path: Path) -> None:
    env, port = edge
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    proxy = HAProxy(env.home / "agent" / "entrance")
    client = Client(port)
    thread = threading.Thread(target=client.run, daemon=True)
    try:
        env.ok("stack", "deploy", "app", "-f", str(compose))
        _serve(env, "app-web-1", "app-web-2", "app-web-3")
        all3 = {"app-web-1", "app-web-2", "app-web-3"}
        until("three replicas behind the entrance", lambda: _servers(proxy) == all3)
        # HAProxy runs in the entrance's namespace (its connections to replicas leave from its
        # own leg on their network) and listens in the host's
        netns = netns_name(env.home / "agent")
        (leg,) = legs.legs(netns).values()
        assert leg.endswith("/24") and leg.split("/")[0] not in _addresses(env, all3)
        assert proxy.netns is None and HAProxy(proxy.dir, netns=netns).in_its_netns(
            proxy.master_pid() or 0)
        assert f"namespace {host_name(env.home / 'agent')}" in proxy.config_path.read_text()
        master = proxy.master_pid()
        assert get(port, "other.example")[0] == 404
        seen: set[str] = set()  # the checks find each httpd started above
        until("requests spread over the replicas",
              lambda: seen.add(_body(port)) or seen >= all3)
        assert seen - {""} == all3
        thread.start()

        env.ok("stack", "scale", "app", "web=1")  # two replicas go: reload, retries
        until("one replica behind the entrance", lambda: _servers(proxy) == {"app-web-1"})
        after_down = time.monotonic()
        until("answers from the one left", lambda: len(client.served_since(after_down)) >= 1)
        assert client.served_since(after_down) <= {"app-web-1"}

        env.ok("stack", "scale", "app", "web=3")  # two new replicas, routed once running
        _serve(env, "app-web-2", "app-web-3")
        until("three replicas again", lambda: _servers(proxy) == all3)
        after_up = time.monotonic()
        until("the new replicas answer", lambda: client.served_since(after_up) == all3)
    finally:
        client.stopping.set()
        if thread.is_alive():
            thread.join(timeout=15)
        env.cli("stack", "rm", "app")
    until("the leg gone with the last route", lambda: legs.legs(netns) == {})
    assert proxy.master_pid() == master  # reloaded, never restarted
    assert len(client.answers) > 50
    assert client.failures == []
    assert leaks(env) == []


def _addresses(env: Dockyard, names: set[str]) -> set[str]:
    with env.api() as api:
        return {str(api.get(f"/v1/instances/{name}")["ip"]) for name in names}


def _servers(proxy: HAProxy) -> set[str]:
    text = proxy.config_path.read_text() if proxy.config_path.exists() else ""
    return {line.split()[1] for line in text.splitlines() if line.strip().startswith("server ")}
