"""What one watch reply costs after one launch, with whole peer lists and with deltas.

    .venv/bin/python bench/watch_reply.py [--peers 1000,3000,10000]

In process, no Docker, no network: the real app (httpx's ASGI transport) on a SQLite store in
a temporary directory, 2 registered hosts, one network with P instances placed (inserted
through the store the way a launch leaves them, for speed), then one more launch through the
API. Then, for an agent that had seen everything before that launch, the watch reply without a
peer token (whole lists: every network's peers, and again in the changed instance) and with
its token (the delta), each asked `--repeat` times: reply bytes and the server's wall time per
reply. In a burst of L launches on N hosts the whole-list protocol sends about N × L such
replies (O(N²) when the instances grow with the hosts); the delta sends one new peer each.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from dockyard.config import ServerSettings
from dockyard.model.ids import new_id
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.store import meta, revision
from dockyard.store import networks as network_rows
from dockyard.store.tables import InstanceRow


def _client(app: Any) -> Any:
    def call(method: str, url: str, token: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
                return await c.request(method, url, headers={
                    "Authorization": f"Bearer {token}"}, **kwargs)
        return asyncio.run(send())
    return call


def one(peers: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServerSettings(home=Path(tmp) / "home",
                                        registry_url="http://127.0.0.1:1"))
        ctx = app.state.ctx
        ctx.registry.resolve = lambda ref: f"{ctx.registry.address}/{ref}"  # every image
        asyncio.run(_bind(ctx))
        project = init_store(ctx.db)
        admin = mint_admin_token(ctx.db, project)
        hosts = {h: mint_host_token(ctx.db, h) for h in ("h1", "h2")}
        call = _client(app)
        for h, token in hosts.items():
            call("POST", "/v1/agent/register", token, json={
                "name": h, "api_url": "http://127.0.0.1:1", "api_secret": "s",
                "inventory": {"cores": list(range(64)), "memory_bytes": 1 << 40}})
        call("POST", "/v1/networks", admin, json={"name": "default", "subnet": "10.64.0.0/12"})
        _fill(ctx, project, peers)
        first = call("GET", "/v1/agent/watch", hosts["h1"],
                     params={"since": 0, "timeout": 0, "peers": ""}).json()
        since, token = first["revision"], first["peers_token"]
        resp = call("POST", "/v1/instances", admin, json={"name": "new", "image": "busybox:1"})
        assert resp.status_code == 202, resp.text
        out: dict[str, float] = {"peers": peers}
        for label, params in (("whole", {"since": since, "timeout": 0}),
                              ("delta", {"since": since, "timeout": 0, "peers": token})):
            sizes, took = [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                reply = call("GET", "/v1/agent/watch", hosts["h1"], params=params)
                took.append(time.perf_counter() - t0)
                sizes.append(len(reply.content))
            out[f"{label}_bytes"] = sizes[-1]
            out[f"{label}_ms"] = sorted(took)[len(took) // 2] * 1000
        ctx.db.close()
        return out


async def _bind(ctx: Any) -> None:
    ctx.notifier.bind(asyncio.get_running_loop())


def _fill(ctx: Any, project: str, n: int) -> None:
    with ctx.db.session() as sess:
        net = network_rows.all_networks(sess)[0]
        host_ids = [h.id for h in _hosts(sess)]
        rev = revision.bump(sess)
        for i in range(n):
            ip = f"10.{72 + (i + 2) // 65536}.{((i + 2) // 256) % 256}.{(i + 2) % 256}"
            sess.add(InstanceRow(id=new_id(), name=f"p{i}", project_id=project,
                                 host_id=host_ids[i % 2], network_id=net.id, image="busybox",
                                 hostname=f"p{i}", ip=ip, mac="02:00:00:00:00:02",
                                 state="running", desired_state="running", generation=1,
                                 limits={}, volumes=[], env={}, revision=rev, options={}))
        meta.put(sess, meta.NETWORKS_REVISION, str(rev))


def _hosts(sess: Any) -> list[Any]:
    from dockyard.store import hosts as host_rows
    return [h for h in (host_rows.by_name(sess, n) for n in ("h1", "h2")) if h is not None]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default="1000,3000,10000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print("| peers on the network | whole lists: bytes | ms | delta: bytes | ms |")
    print("|---|---|---|---|---|")
    for p in (int(x) for x in args.peers.split(",")):
        r = one(p, args.repeat)
        print(f"| {p:,} | {int(r['whole_bytes']):,} | {r['whole_ms']:.1f} | "
              f"{int(r['delta_bytes']):,} | {r['delta_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
