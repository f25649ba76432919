"""App stacks on the dev-cluster (issue #12's end-to-end checks), one story in order on the
package's cluster, whose host1 runs the HTTP entrance (conftest: `--entrance`). A stack
`shop`: a web service (busybox httpd answering "VERSION HOSTNAME", started by the compose
`entrypoint` + `command`, with a healthcheck) × 3 behind the entrance, and a backend.

- deploy (host1 made the fullest by another instance): one web replica per host all the same
  (the service's spread group), and the entrance answers from all three — those on host2
  and host3 through its own leg on the network (its own address and MAC: the gateway is the
  same on every host, agent/entrance.py); scale web to 5 and back to 2;
- v1 → v2 while a client sends a request through the entrance every 20 ms: no failed
  request, every answer v1 or v2, at the end only v2;
- v3 whose healthcheck fails: rolled back automatically while the client keeps getting v2
  (nothing ever serves v3); `stack rollback` then goes back to v1;
- kill -9 of the server half-way through an update (a `delay` between batches): after its
  restart the update finishes, one version on every replica.
(A replica's host cut off → replaced elsewhere: test_evacuate_rebuild.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import hostctl
from tests.e2e.conftest import DOCKYARD, ENTRANCE_PORT, DevCluster
from tests.integration.test_entrance import Client, get
from tests.polling import until

HOST = "shop.example"
COMPOSE = """
services:
  web:
    image: dockyard/busybox
    entrypoint: [/bin/sh, -c]
    command:
      - mkdir -p /www && echo "$$VERSION $$(hostname)" > /www/index.html &&
        exec httpd -f -p 8080 -h /www
    environment: {{VERSION: {version}}}
    healthcheck:
      test: 'test "$$VERSION" != v3 && wget -q -O- http://127.0.0.1:8080/ | grep -q "$$VERSION"'
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 1, order: start-first, failure_action: rollback,
                       delay: {delay}}}
    x-dockyard:
      http: {{host: shop.example, port: 8080}}
  backend:
    image: dockyard/busybox
"""


class Requests:
    """tests/integration/test_entrance.py's 20 ms client, in a thread, as a context."""

    def __init__(self, address: str) -> None:
        self.client = Client(ENTRANCE_PORT, HOST, address)
        self.thread = threading.Thread(target=self.client.run, daemon=True)

    def __enter__(self) -> Client:
        self.thread.start()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.stopping.set()
        self.thread.join(timeout=15)


def versions(client: Client, since: int = 0) -> set[str]:
    return {body.split()[0] for _, status, body in client.answers[since:] if status == 200}


@dataclass
class Shop:
    cluster: DevCluster
    address: str  # host1's management address, where the entrance listens
    compose: Path

    def write(self, version: str, replicas: int = 3, delay: str = "0s") -> Path:
        self.compose.write_text(COMPOSE.format(version=version, replicas=replicas,
                                               delay=delay))
        return self.compose

    def deploy(self, version: str, replicas: int = 3) -> str:
        return self.cluster.ok("stack", "deploy", "shop", "-f",
                               str(self.write(version, replicas)))

    def show(self) -> dict[str, Any]:
        return dict(json.loads(self.cluster.ok("stack", "show", "shop", "--json")))

    def web(self) -> list[dict[str, Any]]:
        return [r for r in self.show()["replicas"] if r["service"] == "web"]

    def bodies(self, count: int) -> list[str]:
        """`count` answers through the entrance ("" for a failed one)."""
        out = []
        for _ in range(count):
            try:
                status, body = get(ENTRANCE_PORT, HOST, timeout=3, address=self.address)
            except OSError:
                status, body = 0, ""
            out.append(body if status == 200 else "")
        return out

    def serving(self, count: int, version: str) -> list[str] | None:
        """The entrance's answers once `count` healthy web replicas all run `version`."""
        reps = self.web()
        if len(reps) != count or any(r["health"] != "healthy" for r in reps):
            return None
        seen = self.bodies(4 * count)
        if not all(body.startswith(f"{version} ") for body in seen):
            return None
        return sorted(set(seen))


@pytest.fixture(scope="module")
def shop(cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    try:
        yield Shop(cluster, cluster.entrance, tmp_path_factory.mktemp("shop") / "compose.yaml")
    finally:
        cluster.cli("stack", "rm", "shop")
        cluster.cli("delete", "ballast", "--force")
        until(lambda: "shop-" not in cluster.ok("list"), "shop's instances are not gone")


def test_deploy_across_hosts_scale_and_update_without_a_failed_request(shop: Shop) -> None:
    # host1 the fullest: the spread strategy alone would leave it out; the service's spread
    # group puts one replica on each host all the same
    shop.cluster.ok("launch", "dockyard/busybox", "ballast", "--host", "host1",
                    "--memory", "512M", "--no-lxcfs")
    shop.deploy("v1")
    until(lambda: shop.serving(3, "v1"), "v1 × 3 never served by the entrance")
    placed = {r["name"]: r["host"] for r in shop.web()}
    assert sorted(placed.values()) == ["host1", "host2", "host3"], placed  # spread
    # every replica answers through the entrance (those on host2 and host3 through its leg),
    # once its reload with the last healthy one is done
    want, seen = {f"v1 {name}" for name in placed}, set()
    until(lambda: seen.update(shop.bodies(3)) or seen >= want,
           f"answers from every replica through the entrance (seen {seen})", timeout=30)
    assert seen == want
    shop.cluster.ok("stack", "scale", "shop", "web=5")
    until(lambda: shop.serving(5, "v1"), "web never scaled to 5")
    shop.cluster.ok("stack", "scale", "shop", "web=2")
    until(lambda: shop.serving(2, "v1"), "web never scaled back to 2")
    with Requests(shop.address) as client:
        shop.deploy("v2", replicas=2)
        until(lambda: shop.serving(2, "v2"), "v2 never served alone")
        seen_v2 = len(client.answers)
        until(lambda: len(client.answers) > seen_v2 + 10, "no answers after the update")
    assert client.failures == [], client.failures[:10]
    assert versions(client) == {"v1", "v2"}
    assert versions(client, seen_v2) == {"v2"}
    assert len(client.answers) > 100


def test_failing_v3_rolled_back_while_v2_serves(shop: Shop) -> None:
    with Requests(shop.address) as client:
        shop.cluster.cli("stack", "deploy", "shop", "-f", str(shop.write("v3", 2)))
        show = until(lambda: (s := shop.show())["status"] == "converged" and s,
                      "the v3 update never ended", timeout=120)
        assert show["spec"]["services"]["web"]["environment"] == {"VERSION": "v2"}
        until(lambda: shop.serving(2, "v2"), "v2 not served after the rollback")
    assert client.failures == [], client.failures[:10]
    assert versions(client) == {"v2"}  # v3 never served
    notes = [v["note"] for v in json.loads(shop.cluster.ok("stack", "history", "shop",
                                                          "--json"))["items"]]
    assert notes[-2].startswith("failed") and notes[-1].startswith("rollback to")
    shop.cluster.ok("stack", "rollback", "shop")
    until(lambda: shop.serving(2, "v1"), "stack rollback never served v1")


def test_kill9_of_the_server_mid_update_then_it_finishes(shop: Shop) -> None:
    """Three replicas, a 3 s delay between batches: the server is killed right after the
    first batch began; the restarted server's loop finishes the update from the store."""
    shop.cluster.ok("stack", "scale", "shop", "web=3")
    until(lambda: shop.serving(3, "v1"), "web never scaled to 3")
    home = shop.cluster.home
    argv = hostctl._argv(hostctl.server_pid(home))
    deploy = subprocess.Popen(
        [DOCKYARD, "stack", "deploy", "shop", "-f", str(shop.write("v2", 3, "3s"))],
        env=shop.cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: len({r["version"] for r in shop.web()}) > 1,  # half-way
               "the update never began", timeout=60)
        pid = hostctl.server_pid(home)
        os.kill(pid, signal.SIGKILL)
        hostctl.wait_gone(pid)
    finally:
        deploy.wait(timeout=60)
    hostctl.start_server(home, argv)
    show = until(lambda: (s := shop.show())["status"] == "converged" and s,
                  "the update never finished after the restart", timeout=120)
    assert show["spec"]["services"]["web"]["environment"] == {"VERSION": "v2"}
    answers = until(lambda: shop.serving(3, "v2"), "v2 × 3 never served")
    assert len({r["version"] for r in shop.web()}) == 1 and len(answers) == 3
