"""The watch's peer lists as deltas (issue 16): on the real app (ASGI transport, a SQLite store,
no lifespan), launches and deletes through the API and the agent feed, the image registry's
answer faked at its seam. A delta reply carries only what changed since the agent's token; an
agent's `PeerBook` that followed deltas holds exactly what a full resync gives, and what the
store holds; a token the server cannot use gets whole lists."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.agent.hostfiles import render_hosts
from dockyard.agent.peers import PeerBook
from dockyard.config import ServerSettings
from dockyard.model.agent import Peer, WatchReply
from dockyard.server import wakeups
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.server.context import ServerContext
from dockyard.server.peers import PeerJournal
from tests.unit.asgi import AppClient

HOSTS = ("h1", "h2")


@dataclass
class Feed:
    client: AppClient
    ctx: ServerContext
    admin: str
    hosts: dict[str, str]  # name -> host token

    def call(self, method: str, url: str, token: str | None = None,
             **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return self.client.request(method, url, headers=headers, **kwargs)

    def watch(self, host: str, since: int, peers: str | None,
              full: bool = False) -> tuple[WatchReply, int]:
        params: dict[str, Any] = {"since": since, "timeout": 0, "full": str(full).lower()}
        if peers is not None:
            params["peers"] = peers
        resp = self.call("GET", "/v1/agent/watch", self.hosts[host], params=params)
        assert resp.status_code == 200, resp.text
        return WatchReply.model_validate_json(resp.content), len(resp.content)

    def launch(self, name: str) -> dict[str, Any]:
        resp = self.call("POST", "/v1/instances", json={"name": name, "image": "busybox:1"})
        assert resp.status_code == 202, resp.text
        return dict(self.call("GET", f"/v1/instances/{name}").json())

    def delete(self, name: str) -> None:
        """DELETE, then the host's agent reports it gone (the row goes, a peer fewer)."""
        shown = self.call("GET", f"/v1/instances/{name}").json()
        assert self.call("DELETE", f"/v1/instances/{name}").status_code == 202
        report = {"state": "deleted", "generation": shown["generation"]}
        resp = self.call("POST", f"/v1/agent/instances/{shown['id']}/report",
                         self.hosts[shown["host"]], json=report)
        assert resp.status_code == 204, resp.text


async def _bind(ctx: ServerContext) -> None:
    ctx.notifier.bind(asyncio.get_running_loop())


@pytest.fixture
def feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Feed]:
    app = create_app(ServerSettings(home=tmp_path / "home", registry_url="http://127.0.0.1:1"))
    ctx: ServerContext = app.state.ctx
    # the registry's seam: every image is in it (no registry process in a unit test)
    monkeypatch.setattr(ctx.registry, "resolve", lambda ref: f"{ctx.registry.address}/{ref}")
    asyncio.run(_bind(ctx))
    admin = mint_admin_token(ctx.db, init_store(ctx.db))
    f = Feed(AppClient(app), ctx, admin, {h: mint_host_token(ctx.db, h) for h in HOSTS})
    inventory = {"cores": [0, 1, 2, 3], "memory_bytes": 8 << 30}
    for host in HOSTS:
        body = {"name": host, "api_url": "http://127.0.0.1:1", "api_secret": "s",
                "inventory": inventory}
        assert f.call("POST", "/v1/agent/register", f.hosts[host], json=body).status_code == 200
    assert f.call("POST", "/v1/networks", json={"name": "default",
                                                "subnet": "10.240.0.0/24"}).status_code == 201
    yield f
    ctx.db.close()


class Follower:
    """One host's agent following the watch as `agent/runtime.py` does (since + token)."""

    def __init__(self, feed: Feed, host: str) -> None:
        self.feed, self.host, self.since, self.book = feed, host, 0, PeerBook()
        self.sizes: list[int] = []
        self.deltas = 0

    def poll(self) -> WatchReply:
        reply, size = self.feed.watch(self.host, self.since, self.book.token)
        self.book.apply(reply)
        self.since = reply.revision
        self.sizes.append(size)
        self.deltas += reply.peers_delta
        return reply


def _live(feed: Feed) -> list[str]:
    body = feed.call("GET", "/v1/instances", params={"limit": 500}).json()
    return sorted(i["ip"] for i in body["items"] if i["state"] != "deleting")


def test_a_delta_reply_carries_only_the_new_peer_and_is_smaller(feed: Feed) -> None:
    for i in range(30):
        feed.launch(f"web{i}")
    agent = Follower(feed, "h1")
    first = agent.poll()
    assert not first.peers_delta and first.peers_token  # nothing held: whole lists
    assert len(first.networks[0].peers) == 30
    since, token = agent.since, agent.book.token
    new = feed.launch("web30")

    delta, delta_size = feed.watch("h1", since, token)
    whole, whole_size = feed.watch("h1", since, None)  # an agent that sends no token
    assert delta.peers_delta and not whole.peers_delta
    assert [p.ip for p in delta.networks[0].peers] == [new["ip"]]
    assert delta.networks[0].peers_gone == []
    assert len(whole.networks[0].peers) == 31
    # the changed instance's own network: no peers in a delta reply (the agent's book has them)
    assert all(d.network.peers == [] for d in delta.instances)
    assert any(len(d.network.peers) == 31 for d in whole.instances)
    assert delta_size * 5 < whole_size, (delta_size, whole_size)

    feed.delete("web3")
    gone, _ = feed.watch("h1", delta.revision, delta.peers_token)
    assert gone.peers_delta and gone.networks[0].peers == []
    assert gone.networks[0].peers_gone == [
        p.ip for p in first.networks[0].peers if p.name == "web3"]


def test_an_agent_converges_from_deltas_and_from_a_resync_alike(feed: Feed) -> None:
    followers = [Follower(feed, h) for h in HOSTS]
    for f in followers:
        f.poll()
    for step in range(12):
        feed.launch(f"a{step}")
        if step % 3 == 2:
            feed.delete(f"a{step - 1}")
        if step % 2:  # agents fall behind by several changes at times
            for f in followers:
                f.poll()
    for f in followers:
        f.poll()
    assert all(f.deltas >= 6 for f in followers)  # they really followed deltas

    fresh = PeerBook()
    reply, _ = feed.watch("h2", 0, "", full=True)
    assert reply.full and not reply.peers_delta
    fresh.apply(reply)
    for f in followers:
        assert f.book._networks == fresh._networks
        assert [p.ip for p in next(iter(f.book._networks.values())).peers] == _live(feed)
    # the /etc/hosts an instance gets is the same either way
    d = reply.instances[0]
    assert render_hosts(d.model_copy(update={"network": followers[0].book.network(d.network)})) \
        == render_hosts(d.model_copy(update={"network": fresh.network(d.network)}))


def test_a_token_the_server_cannot_use_gets_whole_lists(feed: Feed) -> None:
    feed.launch("x1")
    feed.launch("x2")
    agent = Follower(feed, "h1")
    agent.poll()
    epoch = agent.book.token.split(":")[0]
    for token in ("another:1", f"{epoch}:999", f"{epoch}:x", ""):
        reply, _ = feed.watch("h1", 0, token)
        assert not reply.peers_delta, token
        assert len(reply.networks[0].peers) == 2, token
    bad = feed.call("GET", "/v1/agent/watch", feed.hosts["h1"],
                    params={"since": 0, "timeout": 0, "peers": "x" * 65})
    assert bad.status_code == 422


def _net(*ips: str) -> dict[str, dict[str, Peer]]:
    return {"n": {ip: Peer(ip=ip, hostname=ip, name=ip) for ip in ips}}


def test_the_journal_folds_its_entries_and_forgets_the_oldest() -> None:
    journal = PeerJournal(keep=2)
    journal.refresh(1, lambda: _net("10.0.0.2"))
    start = journal.token
    journal.refresh(1, lambda: pytest.fail("read again at the same revision"))
    journal.refresh(2, lambda: _net("10.0.0.2", "10.0.0.3"))
    journal.refresh(3, lambda: _net("10.0.0.3", "10.0.0.4"))
    assert journal.token.endswith(":3")
    folded = journal.since(start)
    assert not folded.full
    assert [p.ip for p in folded.peers["n"]] == ["10.0.0.3", "10.0.0.4"]
    assert folded.gone == {"n": ["10.0.0.2"]}
    journal.refresh(4, lambda: _net("10.0.0.4"))  # the entry after `start` is dropped
    assert journal.since(start).full
    assert [p.ip for p in journal.since(start).peers["n"]] == ["10.0.0.4"]
    assert journal.since(journal.token) == journal.since(journal.token)
    assert journal.since(journal.token).peers == {}


async def _held_watch(feed: Feed, host: str, since: int, token: str,
                      act: Any) -> tuple[WatchReply, float, float]:
    """A watch held in the app's event loop while `act` changes the store from a thread; the
    time the change took and the time the watch answered after it, each from `act`'s start."""
    feed.ctx.notifier.bind(asyncio.get_running_loop())
    feed.ctx.wakeups = wakeups.ChangeIndex()  # its snapshots hold the notifier's old tokens
    transport = httpx.ASGITransport(app=feed.client.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        watch = asyncio.create_task(client.get(
            "/v1/agent/watch", params={"since": since, "timeout": 20, "peers": token},
            headers={"Authorization": f"Bearer {feed.hosts[host]}"}))
        await asyncio.sleep(0.3)  # the watch is held (nothing changed yet)
        assert not watch.done()
        start = asyncio.get_running_loop().time()
        await asyncio.to_thread(act)
        acted = asyncio.get_running_loop().time() - start
        resp = await watch
        answered = asyncio.get_running_loop().time() - start
    return WatchReply.model_validate_json(resp.content), acted, answered


def test_a_watch_answers_its_own_change_at_once_and_peer_changes_batched(
        feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    """h1 holds a watch; launches placed on h2 change only the peers h1 sees: answered no
    sooner than the pacer's batch after h1's last answer, both in one reply. A launch on h1
    answers at once: well before the batch (set long here) or the watch's timeout."""
    monkeypatch.setattr(wakeups, "PEER_BATCH", 4.0)
    agent = Follower(feed, "h1")
    agent.poll()

    def two_on_h2() -> None:
        for name in ("p1", "p2"):
            resp = feed.call("POST", "/v1/instances", json={
                "name": name, "image": "busybox:1", "host": "h2"})
            assert resp.status_code == 202, resp.text

    reply, _, _ = asyncio.run(_held_watch(feed, "h1", agent.since, agent.book.token, two_on_h2))
    assert reply.instances == [] and reply.peers_delta
    assert sorted(p.name for p in reply.networks[0].peers) == ["p1", "p2"]  # batched together
    agent.book.apply(reply)

    def one_on_h1() -> None:
        resp = feed.call("POST", "/v1/instances", json={
            "name": "own", "image": "busybox:1", "host": "h1"})
        assert resp.status_code == 202, resp.text

    monkeypatch.setattr(wakeups, "PEER_BATCH", 60.0)
    reply, acted, answered = asyncio.run(
        _held_watch(feed, "h1", reply.revision, agent.book.token, one_on_h1))
    assert [d.name for d in reply.instances] == ["own"]
    assert answered < acted + 10  # not held for the batch (60 s) or the timeout (20 s)


# -- the networks part shared between hosts (watch_networks.py) -------------------------------
def _launch_on(feed: Feed, name: str, host: str) -> None:
    resp = feed.call("POST", "/v1/instances", json={"name": name, "image": "busybox:1",
                                                     "host": host})
    assert resp.status_code == 202, resp.text


def test_hosts_asking_alike_share_the_networks_but_each_gets_only_its_instances(
        feed: Feed) -> None:
    """h1 and h2 ask with the same revision and token after a launch on h1: one networks part
    is built and both get it; only h1's reply carries the instance."""
    agents = {h: Follower(feed, h) for h in HOSTS}
    for a in agents.values():
        a.poll()
    since, token = agents["h1"].since, agents["h1"].book.token
    assert agents["h2"].book.token == token
    _launch_on(feed, "mine", "h1")
    built = feed.ctx.networks.built
    r1, _ = feed.watch("h1", since, token)
    r2, _ = feed.watch("h2", since, token)
    assert feed.ctx.networks.built == built + 1  # the second reply shared the first's part
    assert [d.name for d in r1.instances] == ["mine"] and r2.instances == []
    assert r1.networks == r2.networks
    assert [p.name for p in r2.networks[0].peers] == ["mine"] and r2.peers_delta


def test_a_host_further_behind_gets_its_own_longer_delta(feed: Feed) -> None:
    """At the same journal state, h2 (three changes behind) and h1 (one behind) get different
    deltas; each agent's book then holds exactly the store's peers."""
    ahead, behind = Follower(feed, "h1"), Follower(feed, "h2")
    ahead.poll()
    behind.poll()
    _launch_on(feed, "b1", "h2")
    _launch_on(feed, "b2", "h2")
    ahead.poll()  # h1 is past b1 and b2
    feed.delete("b1")
    _launch_on(feed, "b3", "h2")
    near = ahead.poll()
    far = behind.poll()
    assert near.peers_delta and far.peers_delta
    assert [p.name for p in near.networks[0].peers] == ["b3"]
    assert sorted(p.name for p in far.networks[0].peers) == ["b2", "b3"]
    assert sorted(d.name for d in far.instances) == ["b2", "b3"]
    for agent in (ahead, behind):
        assert [p.ip for p in agent.book.network(far.networks[0]).peers] == _live(feed)


def test_a_new_network_is_in_the_next_reply_though_the_peers_did_not_change(
        feed: Feed) -> None:
    """A network created without instances moves the networks revision, not the peer journal:
    a part built before must not be given again for the same tokens."""
    _launch_on(feed, "c1", "h1")
    a, b = Follower(feed, "h1"), Follower(feed, "h2")
    a.poll()
    b.poll()
    since, token = a.since, a.book.token
    _launch_on(feed, "c2", "h2")
    assert [n.name for n in feed.watch("h1", since, token)[0].networks] == ["default"]
    assert feed.call("POST", "/v1/networks", json={"name": "second",
                                                   "subnet": "10.240.1.0/24"}).status_code == 201
    reply, _ = feed.watch("h2", since, token)
    assert sorted(n.name for n in reply.networks) == ["default", "second"]
    assert [d.name for d in reply.instances] == ["c2"]


def test_watch_replies_have_worker_threads_of_their_own(feed: Feed) -> None:
    """With every thread of the watches' limiter taken, a launch still goes through (its
    handler's thread comes from anyio's default limiter) and a watch reply waits for one."""
    async def run() -> None:
        ctx = feed.ctx
        ctx.notifier.bind(asyncio.get_running_loop())
        takers = [object() for _ in range(int(ctx.watch_threads.total_tokens))]
        for taker in takers:
            await ctx.watch_threads.acquire_on_behalf_of(taker)
        transport = httpx.ASGITransport(app=feed.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            watch = asyncio.create_task(client.get(
                "/v1/agent/watch", params={"since": 0, "timeout": 0, "peers": ""},
                headers={"Authorization": f"Bearer {feed.hosts['h1']}"}))
            launch = await asyncio.wait_for(client.post(
                "/v1/instances", json={"name": "quick", "image": "busybox:1", "host": "h1"},
                headers={"Authorization": f"Bearer {feed.admin}"}), 10)
            assert launch.status_code == 202, launch.text
            assert not watch.done()
            for taker in takers:
                ctx.watch_threads.release_on_behalf_of(taker)
            reply = WatchReply.model_validate_json((await asyncio.wait_for(watch, 10)).content)
        assert [d.name for d in reply.instances] == ["quick"]

    asyncio.run(run())


def test_a_watch_reads_its_host_and_changed_instances_in_one_query(feed: Feed) -> None:
    """`host_and_changes`: the host's three columns with each changed instance, the host alone
    when none changed, None for a host that never registered."""
    from dockyard.store import instances as instance_rows
    _launch_on(feed, "one", "h1")
    _launch_on(feed, "two", "h1")
    with feed.ctx.db.read() as sess:
        assert instance_rows.host_and_changes(sess, "nobody", None) is None
        found = instance_rows.host_and_changes(sess, "h2", None)
        assert found is not None and found[0][1] == "up" and found[1] == []
        found = instance_rows.host_and_changes(sess, "h1", None)
        assert found is not None and sorted(r.name for r in found[1]) == ["one", "two"]
        first = min(found[1], key=lambda r: r.revision)
        later = instance_rows.host_and_changes(sess, "h1", first.revision)
        assert later is not None and [r.name for r in later[1]] == [
            max(found[1], key=lambda r: r.revision).name]
        assert later[0] == found[0]
