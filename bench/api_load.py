"""The API at size and under bad load (issue 16, items 2 and 6), against a real `dockyard server`.

    .venv/bin/python bench/api_load.py size   [--db sqlite|postgres] [--instances 100000]
    .venv/bin/python bench/api_load.py hammer [--db ...] [--clients 1000] [--seconds 20]
                                              [--rate-limit 0]

`size`: `--hosts` hosts registered (as `bench/hollow.py` does, no agent behind them), one
network, then `--instances` instance rows written straight into the store (with their IP
allocations, spread over the hosts, in the default project) while the server runs. Timed
from one client: `GET /v1/instances/{name}` (random names), a page of `list` (limit 100 at a
random `after`), the same page as an admin naming the project (`?project=`), every page of
the whole list (complete and ordered: checked), the events page, launches (`POST
/v1/instances`, placed and answered, no agent) and deletes (`DELETE ?force`), each as p50/p99.

`hammer`: 1,000 stored instances; `--clients` asyncio clients (one process) for `--seconds`
hammer the API: a third with one valid token (list pages and shows), a third with unknown
tokens, a third with garbage (bad JSON bodies, unknown names, oversized queries). Meanwhile
another tenant's token shows one instance every 0.2 s; its latency is compared with the same
call on the idle server before. Reported: the replies by status (no 5xx allowed), the
server's peak RSS before/during/after, the other tenant's p50/p99 idle and under load, and
the 429s with `Retry-After` when `--rate-limit` is on. Results as JSON (`--out` appends).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from common import emit
from hollow import (
    SUBNET,
    _database,
    _db_size,
    _FakeHostApi,
    _inventory,
    _mint,
    _pct,
    _proc_cpu,
    _proc_rss,
    _Run,
    _start_server,
    _stop,
)


def _timed(http: httpx.Client, n: int, call: Any) -> dict[str, float]:
    took: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        resp = call(http, i)
        took.append(time.perf_counter() - t0)
        if resp.status_code >= 400:
            raise RuntimeError(f"{resp.request.method} {resp.request.url}: {resp.status_code} "
                               f"{resp.text[:300]}")
    return {"n": n, "p50_ms": round(_pct(took, 0.5) * 1000, 2),
            "p99_ms": round(_pct(took, 0.99) * 1000, 2)}


def _fill(db_url: str, count: int, hosts: list[str]) -> list[str]:
    """`count` instance rows and their IP allocations, written in batches; their names."""
    import ipaddress

    from sqlalchemy import insert, select

    from dockyard.model.ids import new_id
    from dockyard.store.db import Database
    from dockyard.store.tables import (
        HostRow,
        InstanceRow,
        IpAllocationRow,
        NetworkRow,
        ProjectRow,
    )
    db = Database(db_url)
    with db.read() as sess:
        net = sess.scalars(select(NetworkRow)).one()
        project = sess.scalars(select(ProjectRow).where(ProjectRow.name == "default")).one()
        host_ids = [sess.scalar(select(HostRow.id).where(HostRow.name == h)) for h in hosts]
    first = int(ipaddress.ip_address(net.gateway)) + 10
    names, now = [], datetime.now(UTC)
    for start in range(0, count, 5000):
        batch, ips = [], []
        for i in range(start, min(count, start + 5000)):
            iid, name = new_id(), f"s{i:06d}"
            ip = str(ipaddress.ip_address(first + i))
            batch.append({"id": iid, "name": name, "project_id": project.id,
                          "host_id": host_ids[i % len(host_ids)], "network_id": net.id,
                          "image": "busybox:latest", "hostname": name, "ip": ip,
                          "mac": "02:42:" + ":".join(f"{(i >> s) & 255:02x}"
                                                     for s in (24, 16, 8, 0)),
                          "state": "running", "desired_state": "running",
                          "container_id": f"c{i}", "generation": 1, "restart_serial": 0,
                          "limits": {}, "volumes": [], "env": {}, "options": {},
                          "revision": 0, "health": "none", "created_at": now,
                          "updated_at": now})
            ips.append({"network_id": net.id, "ip": ip, "instance_id": iid})
            names.append(name)
        with db.session() as sess:
            sess.execute(insert(InstanceRow), batch)
            sess.execute(insert(IpAllocationRow), ips)
    db.engine.dispose()
    return names


def _setup(args: argparse.Namespace, run: _Run, db_url: str, api_url: str,
           extra: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """Server up, `--hosts` registered, the network, `--instances` rows: (admin, names)."""
    admin, agents = _mint(db_url, args.hosts)
    _start_server(run, db_url, api_url, extra)
    with httpx.Client(base_url=run.url, timeout=60) as http:
        http.post("/v1/networks", json={"name": "default", "subnet": SUBNET},
                  headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
        for name, token in agents:
            http.post("/v1/agent/register", headers={"Authorization": f"Bearer {token}"},
                      json={"name": name, "api_url": api_url, "api_secret": "s" * 16,
                            "inventory": _inventory(), "labels": {}}).raise_for_status()
    t0 = time.monotonic()
    names = _fill(db_url, args.instances, [name for name, _ in agents])
    run.log(f"{args.instances} instances stored in {time.monotonic() - t0:.1f} s")
    return admin, names


def size(args: argparse.Namespace, run: _Run, db_url: str, api_url: str) -> dict[str, Any]:
    admin, names = _setup(args, run, db_url, api_url)
    assert run.server is not None
    rng = random.Random(16)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=run.url, timeout=120,
                      headers={"Authorization": f"Bearer {admin}"}) as http:
        out["get_one"] = _timed(http, 300, lambda h, i: h.get(
            f"/v1/instances/{rng.choice(names)}"))
        out["list_page"] = _timed(http, 50, lambda h, i: h.get(
            "/v1/instances", params={"limit": 100, "after": rng.choice(names)}))
        out["list_page_project"] = _timed(http, 50, lambda h, i: h.get(
            "/v1/instances", params={"limit": 100, "after": rng.choice(names),
                                     "project": "default"}))
        out["events_page"] = _timed(http, 30, lambda h, i: h.get("/v1/events"))
        t0, seen, cursor, ordered = time.monotonic(), 0, None, True
        last = ""
        while True:
            page = http.get("/v1/instances", params={"limit": 1000, **(
                {"after": cursor} if cursor else {})}).json()
            for item in page["items"]:
                ordered = ordered and item["name"] > last
                last = item["name"]
            seen += len(page["items"])
            cursor = page.get("next")
            if not cursor:
                break
        out["walk_all"] = {"instances": seen, "complete": seen == len(names),
                           "ordered": ordered, "seconds": round(time.monotonic() - t0, 2)}
        cpu0 = _proc_cpu(run.server.pid)
        out["launch"] = _timed(http, 30, lambda h, i: h.post(
            "/v1/instances", json={"name": f"new{i}", "image": "busybox:latest"}))
        out["delete"] = _timed(http, 30, lambda h, i: h.delete(
            f"/v1/instances/{names[i * 7]}", params={"force": "true"}))
        out["server_cpu_s_mutating"] = round(_proc_cpu(run.server.pid) - cpu0, 2)
    out["server_rss_mib"] = round(_proc_rss(run.server.pid) / 2**20, 1)
    out["db_mib"] = round(_db_size(db_url, run.home) / 2**20, 1)
    return out


async def _hammer(url: str, good: str, victim_name: str, seconds: float,
                  clients: int) -> Counter[str]:
    statuses: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        async def one(k: int) -> None:
            kind = k % 3
            rng = random.Random(k)
            while time.monotonic() < stop:
                try:
                    if kind == 0:
                        h = {"Authorization": f"Bearer {good}"}
                        if rng.random() < 0.5:
                            r = await http.get("/v1/instances", params={"limit": 50}, headers=h)
                        else:
                            r = await http.get(f"/v1/instances/{victim_name}", headers=h)
                    elif kind == 1:
                        h = {"Authorization": f"Bearer dy_{rng.getrandbits(128):x}"}
                        r = await http.get("/v1/instances", headers=h)
                    else:
                        h = {"Authorization": f"Bearer {good}"}
                        choice = rng.randrange(3)
                        if choice == 0:
                            r = await http.post("/v1/instances", content=b"{not json",
                                                headers={**h, "content-type": "application/json"})
                        elif choice == 1:
                            r = await http.get(f"/v1/instances/nope-{rng.getrandbits(32)}",
                                               headers=h)
                        else:
                            r = await http.get("/v1/instances", params={"limit": "x" * 5000},
                                               headers=h)
                    statuses[str(r.status_code)] += 1
                    if r.status_code == 429 and "retry-after" not in r.headers:
                        statuses["429 without Retry-After"] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
        await asyncio.gather(*(one(k) for k in range(clients)))
    return statuses


def hammer(args: argparse.Namespace, run: _Run, db_url: str, api_url: str) -> dict[str, Any]:
    extra = ("--rate-limit", str(args.rate_limit), "--rate-burst", str(args.rate_burst)) \
        if args.rate_limit else ()
    admin, names = _setup(args, run, db_url, api_url, extra)
    assert run.server is not None
    with httpx.Client(base_url=run.url, timeout=60,
                      headers={"Authorization": f"Bearer {admin}"}) as http:
        http.post("/v1/projects", json={"name": "other"}).raise_for_status()
        other = http.post("/v1/tokens", json={"project": "other", "role": "member"}).json()
        tenant = other["token"]
        http.post("/v1/networks", params={"project": "other"},  # a member may not create one
                  json={"name": "o", "subnet": "10.250.0.0/24"}).raise_for_status()
        hammerer = http.post("/v1/tokens", json={"project": "default", "role": "member"}).json()
    good = hammerer["token"]
    with httpx.Client(base_url=run.url, timeout=60,
                      headers={"Authorization": f"Bearer {tenant}"}) as http:
        probe = "/v1/networks/o"

        def sample(seconds: float) -> list[float]:
            took, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                resp = http.get(probe)
                took.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
                time.sleep(0.2)
            return took

        idle = sample(5.0)
        rss_before = _proc_rss(run.server.pid)
        during: list[float] = []
        rss: list[int] = []
        done = threading.Event()

        def watch_tenant() -> None:
            while not done.is_set():
                during.extend(sample(1.0))
                rss.append(_proc_rss(run.server.pid))

        watcher = threading.Thread(target=watch_tenant)
        watcher.start()
        cpu0 = _proc_cpu(run.server.pid)
        statuses = asyncio.run(_hammer(run.url, good, names[0], args.seconds, args.clients))
        done.set()
        watcher.join()
        cpu = _proc_cpu(run.server.pid) - cpu0
        after = sample(3.0)
    ms = 1000.0
    return {"clients": args.clients, "seconds": args.seconds, "rate_limit": args.rate_limit,
            "statuses": dict(statuses),
            "five_xx": sum(v for k, v in statuses.items() if k.startswith("5")),
            "replies_per_s": round(sum(v for k, v in statuses.items() if k.isdigit())
                                   / args.seconds, 1),
            "server_cpu_cores": round(cpu / args.seconds, 2),
            "rss_mib_before": round(rss_before / 2**20, 1),
            "rss_mib_peak": round(max(rss or [0]) / 2**20, 1),
            "rss_mib_after": round(_proc_rss(run.server.pid) / 2**20, 1),
            "tenant_idle_p50_ms": round(_pct(idle, 0.5) * ms, 2),
            "tenant_idle_p99_ms": round(_pct(idle, 0.99) * ms, 2),
            "tenant_load_p50_ms": round(_pct(during, 0.5) * ms, 2),
            "tenant_load_p99_ms": round(_pct(during, 0.99) * ms, 2),
            "tenant_after_p50_ms": round(_pct(after, 0.5) * ms, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("size", "hammer"))
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--instances", type=int, default=0, help="default: 100,000 (size), "
                    "1,000 (hammer)")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate-limit", type=float, default=0.0)
    ap.add_argument("--rate-burst", type=int, default=200)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.instances = args.instances or (100_000 if args.mode == "size" else 1_000)
    home = Path(tempfile.mkdtemp(prefix=f"dy-api-{args.mode}-"))
    run = _Run(args=argparse.Namespace(heartbeat_timeout=3600.0), home=home)
    api = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHostApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    api_url = f"http://127.0.0.1:{api.server_address[1]}"
    result: dict[str, Any] = {"mode": args.mode, "db": args.db, "instances": args.instances,
                              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        with _database(args.db, home) as db_url:
            work = size if args.mode == "size" else hammer
            result.update(work(args, run, db_url, api_url))
    finally:
        _stop(run)
        api.shutdown()
        api.server_close()
        shutil.rmtree(home, ignore_errors=True)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
