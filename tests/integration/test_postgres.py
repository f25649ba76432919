"""Two `dockyard server` processes on one PostgreSQL serve one cluster consistently.

One agent watches server A; clients talk to A and B at random. Changes made through B reach
the agent on A by LISTEN/NOTIFY (no polling), and 100 concurrent launches through both servers
never double-book an address or a core: each is placed (and runs) or refused with a reason.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.client import ApiClient
from tests.integration.dockyard_env import free_port, free_subnet
from tests.integration.split_env import SplitDockyard
from tests.postgres import fresh_database

LAUNCHES = 100
WITH_CORE = 10  # of the launches ask for one exclusive core


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SplitDockyard]:
    """Server A + agent, server B, on a /27 network (29 addresses for 100 launches)."""
    with fresh_database("two_servers") as url:
        subnet = free_subnet().replace(".0/24", ".0/27")
        env = SplitDockyard(root=Path(tmp_path_factory.mktemp("pg")), port=free_port(),
                            subnet=subnet, database_url=url)
        try:
            env.start()
            env.start_second_server()
            yield env
        finally:
            try:
                _delete_all(env)
            finally:  # the servers and agent go even when a delete is refused
                env.cleanup()


def _client(url: str, token: str, verify: Any) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                        timeout=180, limits=httpx.Limits(max_connections=LAUNCHES),
                        verify=verify)


def _instances(env: SplitDockyard) -> list[dict[str, Any]]:
    with env.api() as api:
        return list(api.list_all("/v1/instances"))


def _wait(env: SplitDockyard, done: Any, what: str, timeout: float = 240) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = _instances(env)
        if done(items):
            return items
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f}s: {_instances(env)}\n{env.log_tail()}")


def _delete_all(env: SplitDockyard) -> None:
    if env.server is None or env.server.poll() is not None:
        return
    urls = [env.url, env.url2]
    with env.api():
        for n, inst in enumerate(_instances(env)):  # through both servers
            with ApiClient(urls[n % 2], env.token(), timeout=60, ca=env.ca) as api:
                api.delete(f"/v1/instances/{inst['name']}", force="true")
    _wait(env, lambda items: not items, "every instance deleted")


def _watches(env: SplitDockyard) -> int:
    """Watch requests of host `local` that server A has counted (the count is per server)."""
    with env.api() as api:
        return int(api.get("/v1/hosts/local")["feed_requests"].get("watch", 0))


def _new_watch(env: SplitDockyard, after: int, timeout: float = 40.0) -> int:
    """Wait until server A received a watch request beyond the first `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (count := _watches(env)) > after:
            return count
        time.sleep(0.05)
    raise AssertionError(f"no new watch on server A within {timeout:.0f}s")


def _watch_until(env: SplitDockyard, since: int, name: str, seen: list[float]) -> None:
    """Long-poll server A's agent feed (as the agent does) until `name` shows up."""
    with ApiClient(env.url, env.host_token, timeout=60, ca=env.ca) as feed:
        while not seen:
            reply = feed.get("/v1/agent/watch", since=since, timeout=30)
            if any(i["name"] == name for i in reply["instances"]):
                seen.append(time.monotonic())


def test_a_launch_through_b_wakes_the_agent_watching_a(split: SplitDockyard) -> None:
    with ApiClient(split.url, split.host_token, timeout=30, ca=split.ca) as feed:
        since = feed.get("/v1/agent/watch", since=0, timeout=0)["revision"]
    seen: list[float] = []
    watcher = threading.Thread(target=_watch_until, args=(split, since, "via-b", seen))
    agent = _new_watch(split, _watches(split))  # the agent's next watch is ~20 s away now
    watcher.start()
    _new_watch(split, agent)  # so this one is ours: parked on server A
    assert not seen, "server A answered the watch before anything changed"
    with _client(split.url2, split.token(), split.verify) as b:
        started = time.monotonic()
        reply = b.post("/v1/instances", json={"name": "via-b", "image": split.image})
    assert reply.status_code == 202, reply.text
    watcher.join(timeout=30)
    assert seen, "the watch on server A never saw the launch made through server B"
    # unwoken, server A holds the watch for its watch timeout (20 s): half of it is a margin
    # no loaded machine needs for a NOTIFY and a reply
    assert seen[0] - started < 10.0, f"woken after {seen[0] - started:.2f}s"
    _wait(split, lambda items: [i["state"] for i in items] == ["running"], "via-b running")
    _delete_all(split)


def _launch(clients: list[httpx.Client], image: str, n: int) -> tuple[str, httpx.Response]:
    name = f"c{n:03d}"
    body: dict[str, Any] = {"name": name, "image": image}
    if n < WITH_CORE:
        body["limits"] = {"cores": 1}
    return name, clients[n % 2].post("/v1/instances", json=body)


def _db_has_no_double_booking(split: SplitDockyard, placed: set[str]) -> None:
    instances = split.db_query("SELECT id, name, ip, network_id FROM instances")
    assert {row[1] for row in instances} == placed
    ips = [(row[3], row[2]) for row in instances]
    assert len(ips) == len(set(ips)), "an address is held twice"
    allocations = split.db_query("SELECT network_id, ip, instance_id FROM ip_allocations")
    assert sorted((n, ip) for n, ip, _ in allocations) == sorted(ips)
    cores = split.db_query("SELECT host_id, core, instance_id FROM core_allocations")
    assert len({(h, c) for h, c, _ in cores}) == len(cores), "a core is held twice"
    assert len(cores) <= 1, "the 2-core host keeps one core shared, so one exclusive at most"


def test_concurrent_launches_through_two_servers(split: SplitDockyard) -> None:
    token = split.token()
    with _client(split.url, token, split.verify) as a, \
            _client(split.url2, token, split.verify) as b, \
            ThreadPoolExecutor(max_workers=LAUNCHES) as pool:
        order = random.sample(range(LAUNCHES), LAUNCHES)
        results = list(pool.map(lambda n: _launch([a, b], split.image, n), order))
    placed = {name for name, r in results if r.status_code == 202}
    refused = {name: r.json() for name, r in results if r.status_code != 202}
    for name, body in refused.items():
        message = body.get("error", {}).get("message", "")
        assert body["error"]["code"] and message, f"{name}: refused without a reason: {body}"
    statuses = {r.status_code for _, r in results}
    assert statuses <= {202, 409}, [(n, r.status_code, r.text) for n, r in results
                                    if r.status_code not in (202, 409)]
    reasons = {b["error"]["message"] for b in refused.values()}
    assert any("no free address" in m for m in reasons), reasons
    assert 0 < len(placed) <= 29 and len(placed) + len(refused) == LAUNCHES
    _db_has_no_double_booking(split, placed)
    items = _wait(split, lambda items: all(i["state"] == "running" for i in items),
                  "every placed instance running")
    assert {i["name"] for i in items} == placed
    exclusive = [i["limits"]["cpuset"] for i in items if i["limits"]["cores"]]
    assert len(exclusive) == len(set(exclusive))
    _delete_all(split)
