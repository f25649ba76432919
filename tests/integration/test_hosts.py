"""Many hosts on one machine: `host add` + a second agent process (`h2`, same dockerd, its own
home), drain/remove, the watch as heartbeat (idle request budget, a launch still arrives at
once), host down → `unknown` → back, and fencing of a stale generation.

The server runs with `--heartbeat-timeout 5`, so the held watch lasts P = 5 × 2/3 ≈ 3.3 s
(at the default 30 s it is 20 s: ≤ 2 requests in any 30 s). The idle check allows at most one
request per P plus one over a window of 4 P, which is the same bound scaled.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from dockyard.errors import Conflict
from tests.integration.dockyard_env import IMAGE
from tests.integration.split_env import SplitDockyard, make_split

HEARTBEAT_TIMEOUT = 5.0
POLL = HEARTBEAT_TIMEOUT * 2 / 3  # server/hosts.py watch_timeout


@pytest.fixture(scope="module")
def split() -> Iterator[SplitDockyard]:
    env = make_split()
    env.server_args = ["--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)]
    env.agent_args = ["--collector-interval", "3600"]  # stats posts are not the watch's
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def host(env: SplitDockyard, name: str) -> dict[str, Any]:
    with env.api() as api:
        return dict(api.get(f"/v1/hosts/{name}"))


def instance(env: SplitDockyard, name: str) -> dict[str, Any]:
    with env.api() as api:
        return dict(api.get(f"/v1/instances/{name}"))


def containers_of(env: SplitDockyard, instance_id: str) -> list[Any]:
    return [c for c in env.containers() if c.labels.get("dockyard.instance") == instance_id]


def start_h2(env: SplitDockyard, token: str) -> subprocess.Popen[bytes]:
    return env._spawn("agent-h2", [
        "agent", "--server", env.url, "--token", token, "--name", "h2",
        "--home", str(env.root / "h2"), "--cores", "0", "--memory", "1G",
        "--label", "zone=a", "--label", "rack=r1", "--collector-interval", "3600",
        *(["--ca", str(env.ca)] if env.ca else [])], None)


def bump_generation(env: SplitDockyard, instance_id: str) -> None:
    """What an evacuate that re-placed the instance while its host was down leaves behind."""
    conn = sqlite3.connect(env.home / "dockyard.db", timeout=10)
    try:
        with conn:
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                         "WHERE key = 'revision'")
            conn.execute("UPDATE instances SET generation = generation + 1, revision = "
                         "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'revision') "
                         "WHERE id = ?", (instance_id,))
    finally:
        conn.close()


def idle_requests(env: SplitDockyard, names: tuple[str, ...],
                  window: float) -> dict[str, tuple[int, dict[str, int]]]:
    """The feed requests of each host in one shared window (the agents are independent, so
    one window of `window` seconds measures each of them as a window of its own would)."""
    before = {name: host(env, name)["feed_requests"] for name in names}
    time.sleep(window)
    counted: dict[str, tuple[int, dict[str, int]]] = {}
    for name in names:
        after = host(env, name)["feed_requests"]
        delta = {k: v - before[name].get(k, 0) for k, v in after.items()
                 if v != before[name].get(k, 0)}
        counted[name] = (sum(delta.values()), delta)
    return counted


def test_second_host_drain_idle_watch_and_remove(split: SplitDockyard) -> None:
    added = split.cli("host", "add", "h2", "--label", "zone=b")
    assert added.code == 0, added.err
    token = next(w for w in added.out.split() if w.startswith("dy_"))
    assert f"dockyard agent --server {split.url} --token {token} --name h2" in \
        " ".join(added.out.split())
    assert host(split, "h2")["state"] == "down"  # until its agent registers
    with split.api() as api, pytest.raises(Conflict):
        api.post("/v1/hosts", {"name": "h2"})
    h2 = start_h2(split, token)
    try:
        until("h2 up", lambda: host(split, "h2")["state"] == "up")
        shown = host(split, "h2")
        assert shown["labels"] == {"zone": "b", "rack": "r1"}  # `host add` labels win
        assert shown["cores"] == [0] and shown["memory_bytes"] == 1 << 30
        listed = split.cli("host", "list", "--json")
        assert '"h2"' in listed.out and '"local"' in listed.out

        assert split.cli("host", "drain", "h2").code == 0
        assert host(split, "h2")["draining"] is True
        with split.api() as api:
            with pytest.raises(Conflict):
                api.post("/v1/instances", {"name": "pinned", "image": IMAGE, "host": "h2"})
            for name in ("d1", "d2"):
                made = api.post("/v1/instances", {"name": name, "image": IMAGE}, wait="true")
                assert made["host"] == "local" and made["state"] == "running"
        removed = split.cli("host", "remove", "local")
        assert removed.code != 0 and "instance" in (removed.err + removed.out)

        # Idle: both agents only hold watches. Bound: one request per poll period, plus one.
        window = 4 * POLL
        for name, (count, kinds) in idle_requests(split, ("h2", "local"), window).items():
            print(f"idle {name}: {count} requests in {window:.1f}s: {kinds}")
            assert count <= window / POLL + 1, kinds
            assert set(kinds) == {"watch"}, kinds  # no heartbeat POSTs, no repeated reports
            assert host(split, name)["state"] == "up"  # the watch alone keeps it up

        # the launch right after local's agent parked a new watch: left to the poll, the
        # container would come no sooner than that watch's end (POLL, 3.3 s, minus the
        # moments spent noticing the watch); woken, it comes after a docker create, which
        # may take a second or two on a loaded machine
        watches = host(split, "local")["feed_requests"].get("watch", 0)
        until("a new watch of local's agent",
              lambda: host(split, "local")["feed_requests"].get("watch", 0) > watches, 2 * POLL)
        with split.api() as api:
            sent = time.time()
            made = api.post("/v1/instances", {"name": "d3", "image": IMAGE, "host": "local"})
        found = until("d3's container", lambda: containers_of(split, made["id"]), 10)
        created = datetime.fromisoformat(found[0].attrs["Created"][:26].rstrip("Z") + "+00:00")
        latency = created.timestamp() - sent
        print(f"launch → container created on the agent: {latency:.3f}s")
        assert latency < 0.8 * POLL, f"{latency:.2f}s: the watch was not woken by the launch"
        until("d3 running", lambda: instance(split, "d3")["state"] == "running")
    finally:
        h2.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            h2.wait(20)
        if h2.poll() is None:
            h2.kill()
    with split.api() as api:
        for name in ("d1", "d2", "d3"):
            api.delete(f"/v1/instances/{name}", wait="true", force="true")
    assert split.cli("host", "remove", "h2").code == 0
    with split.api() as api:
        assert [h["name"] for h in api.get("/v1/hosts")["items"]] == ["local"]
    assert split.db_query("SELECT count(*) FROM tokens WHERE host_name = 'h2'") == [(0,)]


def test_agent_killed_host_down_unknown_back_and_fenced(split: SplitDockyard) -> None:
    with split.api() as api:
        made = api.post("/v1/instances", {"name": "f1", "image": IMAGE}, wait="true")
    iid = made["id"]
    old = containers_of(split, iid)
    assert len(old) == 1

    split.stop_agent(signal.SIGKILL)
    until("host down", lambda: host(split, "local")["state"] == "down", HEARTBEAT_TIMEOUT + 10)
    assert instance(split, "f1")["state"] == "unknown"
    split.start_agent()
    until("f1 running", lambda: instance(split, "f1")["state"] == "running")
    now = containers_of(split, iid)
    assert [c.id for c in now] == [old[0].id] and now[0].status == "running"  # no duplicate

    split.stop_agent(signal.SIGKILL)
    bump_generation(split, iid)
    split.start_agent()
    until("generation 2 running", lambda: instance(split, "f1")["generation"] == 2
          and instance(split, "f1")["state"] == "running")

    def remade() -> bool:  # (the store says `running` all along: bump_generation wrote it)
        return any(c.name == f"dy-{iid}" and c.status == "running"
                   and c.labels.get("dockyard.generation") == "2"
                   for c in containers_of(split, iid))
    until("the generation 2 copy running beside the fenced one", remade, 60)
    time.sleep(2 * POLL)  # a resync later: the stale copy stays stopped
    copies = {c.id: c for c in containers_of(split, iid)}
    assert len(copies) == 2
    stale = copies[old[0].id]
    assert stale.status == "exited" and stale.name.startswith(f"dy-{iid}.stale-g1-")
    current = next(c for c in copies.values() if c.id != old[0].id)
    assert current.name == f"dy-{iid}" and current.status == "running"
    assert current.labels["dockyard.generation"] == "2"
    with split.api() as api:
        api.delete("/v1/instances/f1", wait="true", force="true")
    assert containers_of(split, iid) == []  # set-aside copies go with the instance
