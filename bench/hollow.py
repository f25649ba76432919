"""Hollow agents: N simulated hosts against one real `dockyard server` (like kubemark).

    .venv/bin/python bench/hollow.py --hosts 1000 [--db sqlite|postgres] [--launches 300]

One `dockyard server` (a child process, plain HTTP on loopback, its own HOME) on SQLite or on a
fresh database of the test PostgreSQL (scripts/postgres.sh, 127.0.0.1:55432; dropped after).
The hosts' tokens are minted straight into the store before the server starts. `--procs`
worker processes each run their share of the agents on one asyncio loop with one httpx pool.
A hollow agent speaks the real agent protocol (`dockyard.model.agent`) and nothing else runs:

* registers (`POST /v1/agent/register`, an inventory of 8 cores and 64 GiB, no routes);
* long-polls `GET /v1/agent/watch?since=REV` with the timeout the server hands out, sending
  the peer-state token of the last reply (`peers=`) so the server may answer with deltas;
  keeps every network's peer list as the real agent does (`agent/peers.py`);
* "runs" what it is given: a desired `running` instance is reported `running` (a fake
  container id), `stopped` reported `stopped`, `deleted` reported `deleted` — no Docker;
* posts a heartbeat (its inventory) every `--heartbeat` seconds, more than the real agent
  (it posts only when the inventory changed; its watch is its heartbeat).

The server's own calls to a host's agent API (does the image exist there?) and to the image
registry (`--registry`) are answered by one tiny HTTP server in this process.

Phases, each timed: registration of all hosts; steady state (`--steady` s: the server's CPU
time and RSS from /proc, the request rates the agents made); a launch burst (`--launches`
`POST /v1/instances` from `--clients` threads: each call's latency is "placed and
acknowledged", the agent excluded; watch latency = from the POST's start until the agent's
watch reply carried it); convergence (every launch reported running); deletes (every delete
seen by its agent and the row gone). Results as JSON (`--out`); `--markdown` prints the rows
`bench/RESULTS.md`'s "Scale" section shows.

The hollow processes share the machine with the server (2 cores here): their CPU is
reported beside the server's, and what the server gets is what they leave.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from dockyard.agent.peers import PeerBook
from dockyard.model.agent import WatchReply

ROOT = Path(__file__).resolve().parents[1]
PY = Path(sys.executable)
DOCKYARD = PY.parent / "dockyard"
GIB = 1 << 30
SUBNET = "10.240.0.0/14"  # room for 260k addresses; never a bridge: nothing is plumbed
TICKS = os.sysconf("SC_CLK_TCK")


# -- the host API and registry the server asks about images --------------------------------
class _FakeHostApi(BaseHTTPRequestHandler):
    """`/v1/images/exists` of every hollow host and the registry's manifests: yes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/v1/images/exists"):
            body: dict[str, Any] = {"exists": True}
        elif self.path.startswith("/v2/") and "/manifests/" in self.path:
            body = {"schemaVersion": 2, "config": {"size": 1_000},
                    "layers": [{"size": 2_000_000}]}
        elif self.path.rstrip("/") == "/v2":
            body = {}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- one hollow agent ----------------------------------------------------------------------
@dataclass
class _Hollow:
    name: str
    token: str
    since: int = 0
    book: PeerBook = field(default_factory=PeerBook)
    reported: dict[str, tuple[str, int, int]] = field(default_factory=dict)


@dataclass
class _Tally:
    requests: Counter[str] = field(default_factory=Counter)
    watch_bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seen: list[tuple[str, str, float]] = field(default_factory=list)  # (id, what, when)


async def _call(client: httpx.AsyncClient, tally: _Tally, agent: _Hollow, method: str,
                path: str, kind: str, **kwargs: Any) -> httpx.Response:
    tally.requests[kind] += 1
    resp = await client.request(method, path, headers={"Authorization": f"Bearer {agent.token}"},
                                **kwargs)
    if resp.status_code >= 400:
        tally.errors[f"{kind} {resp.status_code}"] += 1
    return resp


def _inventory() -> dict[str, Any]:
    return {"cores": list(range(8)), "memory_bytes": 64 * GIB, "routes": [],
            "docker_version": "hollow", "kernel": "hollow"}


async def _register(client: httpx.AsyncClient, tally: _Tally, agent: _Hollow,
                    api_url: str) -> float:
    body = {"name": agent.name, "api_url": api_url, "api_secret": secrets.token_hex(8),
            "inventory": _inventory(), "labels": {}}
    while True:
        with contextlib.suppress(httpx.HTTPError):
            resp = await _call(client, tally, agent, "POST", "/v1/agent/register", "register",
                               json=body)
            if resp.status_code == 200:
                return float(resp.json()["watch_timeout"])
        await asyncio.sleep(0.5)


async def _obey(client: httpx.AsyncClient, tally: _Tally, agent: _Hollow,
                reply: WatchReply, now: float) -> None:
    for d in reply.instances:
        state = {"running": "running", "stopped": "stopped"}.get(d.desired_state.value,
                                                                "deleted")
        key = (state, d.generation, d.restart_serial)
        if agent.reported.get(d.id) == key:
            continue
        tally.seen.append((d.id, state, now))
        body = {"state": state, "container_id": f"hollow-{d.id}", "generation": d.generation,
                "restart_serial": d.restart_serial, "revision": d.revision}
        resp = await _call(client, tally, agent, "POST", f"/v1/agent/instances/{d.id}/report",
                           "report", json=body)
        if resp.status_code < 400:
            agent.reported[d.id] = key
        if state == "deleted":
            agent.reported.pop(d.id, None)


async def _live(client: httpx.AsyncClient, tally: _Tally, agent: _Hollow, api_url: str,
                heartbeat: float, stop: asyncio.Event) -> None:
    timeout = await _register(client, tally, agent, api_url)
    tally.seen.append(("", "registered", time.time()))
    beat = asyncio.get_running_loop().create_task(_beat(client, tally, agent, heartbeat, stop))
    try:
        while not stop.is_set():
            params: dict[str, Any] = {"since": agent.since, "timeout": timeout}
            if agent.book.token:
                params["peers"] = agent.book.token
            try:
                resp = await _call(client, tally, agent, "GET", "/v1/agent/watch", "watch",
                                   params=params)
            except httpx.HTTPError as exc:
                tally.errors[f"watch {type(exc).__name__}"] += 1
                agent.since, agent.book = 0, PeerBook()
                await asyncio.sleep(1.0)
                continue
            if resp.status_code != 200:
                agent.since, agent.book = 0, PeerBook()
                await asyncio.sleep(1.0)
                continue
            now = time.time()
            tally.watch_bytes += len(resp.content)
            reply = WatchReply.model_validate_json(resp.content)
            agent.book.apply(reply)
            await _obey(client, tally, agent, reply, now)
            agent.since = reply.revision
    finally:
        beat.cancel()


async def _beat(client: httpx.AsyncClient, tally: _Tally, agent: _Hollow, every: float,
                stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(every)
        with contextlib.suppress(httpx.HTTPError):
            await _call(client, tally, agent, "POST", "/v1/agent/heartbeat", "heartbeat",
                        json={"inventory": _inventory()})


def _worker(url: str, agents: list[tuple[str, str]], api_url: str, heartbeat: float,
            out: Any, stop: Any) -> None:
    """One process: its agents on one event loop; every second its tally goes to `out`."""
    asyncio.run(_work(url, agents, api_url, heartbeat, out, stop))


async def _work(url: str, agents: list[tuple[str, str]], api_url: str, heartbeat: float,
                out: Any, stop_flag: Any) -> None:
    tally = _Tally()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=2 * len(agents) + 16,
                          max_keepalive_connections=2 * len(agents) + 16)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as client:
        hollows = [_Hollow(name, token) for name, token in agents]
        tasks = [asyncio.create_task(_live(client, tally, h, api_url, heartbeat, stop))
                 for h in hollows]
        while not stop_flag.is_set():
            await asyncio.sleep(1.0)
            out.put(_drain(tally))
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out.put(_drain(tally))


def _drain(tally: _Tally) -> dict[str, Any]:
    batch = {"requests": dict(tally.requests), "watch_bytes": tally.watch_bytes,
             "errors": dict(tally.errors), "seen": tally.seen}
    tally.requests, tally.errors, tally.seen, tally.watch_bytes = Counter(), Counter(), [], 0
    return batch


# -- the orchestrator ----------------------------------------------------------------------
@dataclass
class _Totals:
    """What the workers sent, summed; `seen` by (instance id, what) -> first time."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    watch_bytes: int = 0
    registered: int = 0
    seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def take(self, q: Any) -> None:
        while q is not None:
            try:
                batch = q.get_nowait()
            except queue.Empty:
                return
            self.requests.update(batch["requests"])
            self.errors.update(batch["errors"])
            self.watch_bytes += batch["watch_bytes"]
            for iid, what, when in batch["seen"]:
                if what == "registered":
                    self.registered += 1
                else:
                    self.seen.setdefault((iid, what), when)


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def _proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def _database(kind: str, home: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{home / 'dockyard.db'}"
        return
    sys.path.insert(0, str(ROOT))
    from tests.postgres import fresh_database  # the test PostgreSQL's fresh-database helper
    with fresh_database("hollow") as url:
        yield url


def _mint(url: str, n: int) -> tuple[str, list[tuple[str, str]]]:
    from dockyard.server.bootstrap import init_store, mint_admin_token
    from dockyard.store import tokens
    from dockyard.store.db import Database
    db = Database(url)
    project = init_store(db)
    admin = mint_admin_token(db, project)
    names = [f"hollow-{i:05d}" for i in range(n)]
    with db.session() as sess:
        agents = [(name, tokens.mint(sess, "host", host_name=name, description=name))
                  for name in names]
    db.engine.dispose()
    return admin, agents


@dataclass
class _Run:
    args: argparse.Namespace
    home: Path
    url: str = ""
    server: subprocess.Popen[bytes] | None = None
    workers: list[Any] = field(default_factory=list)
    out: Any = None
    stop: Any = None
    totals: _Totals = field(default_factory=_Totals)
    log_file: Any = None

    def log(self, msg: str) -> None:
        print(f"[hollow {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def wait(self, done: Any, what: str, limit: float) -> float:
        start = time.monotonic()
        while not done():
            if time.monotonic() - start > limit:
                raise TimeoutError(f"{what}: not done after {limit:.0f} s")
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError(f"the server exited ({self.server.returncode}); "
                                   f"see {self.home / 'server.log'}")
            time.sleep(0.2)
            self.totals.take(self.out)
        return time.monotonic() - start


def _start_server(run: _Run, db_url: str, registry: str, extra: tuple[str, ...] = ()) -> None:
    port = _free_port()
    run.url = f"http://127.0.0.1:{port}"
    run.log_file = (run.home / "server.log").open("wb")
    run.server = subprocess.Popen(
        [str(DOCKYARD), "server", "--home", str(run.home / "server"), "--listen",
         f"127.0.0.1:{port}", "--db", db_url, "--no-tls", "--registry", registry,
         "--heartbeat-timeout", str(run.args.heartbeat_timeout), *extra],
        stdout=run.log_file, stderr=subprocess.STDOUT)
    run.wait(lambda: _healthy(run.url), "server start", 60)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _steady(run: _Run, seconds: float) -> dict[str, Any]:
    assert run.server is not None
    run.totals.take(run.out)
    before = Counter(run.totals.requests)
    bytes_before = run.totals.watch_bytes
    cpu0, t0 = _proc_cpu(run.server.pid), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        rss.append(_proc_rss(run.server.pid))
        run.totals.take(run.out)
    took = time.monotonic() - t0
    cpu = _proc_cpu(run.server.pid) - cpu0
    rates = {k: (run.totals.requests[k] - before[k]) / took for k in run.totals.requests}
    return {"seconds": round(took, 1), "server_cpu_cores": round(cpu / took, 3),
            "server_rss_mib": round(max(rss) / 2**20, 1),
            "requests_per_s": {k: round(v, 1) for k, v in sorted(rates.items())},
            "watch_kib_per_s": round((run.totals.watch_bytes - bytes_before) / took / 1024, 1)}


def _burst(run: _Run, n: int, clients: int, admin: str) -> dict[str, Any]:
    """`n` launches from `clients` threads; then deletes; latencies and agent sightings."""
    assert run.server is not None
    headers = {"Authorization": f"Bearer {admin}"}
    sent: dict[str, float] = {}
    took: list[float] = []
    lock = threading.Lock()

    def launch(i: int, http: httpx.Client) -> None:
        t0 = time.time()
        resp = http.post("/v1/instances", json={"name": f"h{i}", "image": "busybox:latest"})
        t1 = time.time()
        if resp.status_code != 202 and resp.status_code != 201:
            raise RuntimeError(f"launch h{i}: {resp.status_code} {resp.text[:300]}")
        with lock:
            sent[resp.json()["id"]] = t0
            took.append(t1 - t0)

    def remove(iid: str, http: httpx.Client) -> None:
        t0 = time.time()
        resp = http.delete(f"/v1/instances/{iid}", params={"force": "true"})
        t1 = time.time()
        if resp.status_code >= 400:
            raise RuntimeError(f"delete {iid}: {resp.status_code} {resp.text[:300]}")
        with lock:
            deleted_at[iid] = t0
            delete_took.append(t1 - t0)

    deleted_at: dict[str, float] = {}
    delete_took: list[float] = []
    with contextlib.ExitStack() as stack:
        pool = [stack.enter_context(httpx.Client(base_url=run.url, headers=headers,
                                                 timeout=120)) for _ in range(clients)]
        executor = stack.enter_context(ThreadPoolExecutor(clients))
        cpu0, t0 = _proc_cpu(run.server.pid), time.monotonic()
        list(executor.map(lambda i: launch(i, pool[i % clients]), range(n)))
        launch_wall = time.monotonic() - t0
        converge = run.wait(lambda: all((iid, "running") in run.totals.seen for iid in sent),
                            "every launch reported running", 600) + launch_wall
        run.wait(lambda: _states(run.url, headers) == {"running": n}, "API shows running", 120)
        cpu_launch = _proc_cpu(run.server.pid) - cpu0
        rss_after_launch = _proc_rss(run.server.pid)
        cpu1, t1 = _proc_cpu(run.server.pid), time.monotonic()
        ids = list(sent)
        list(executor.map(lambda k: remove(ids[k], pool[k % clients]), range(len(ids))))
        gone = run.wait(lambda: not _any_left(run.url, headers), "every delete gone", 600)
        delete_wall = time.monotonic() - t1
        cpu_delete = _proc_cpu(run.server.pid) - cpu1
    run.totals.take(run.out)
    watch = [run.totals.seen[(iid, "running")] - t for iid, t in sent.items()]
    watch_del = [run.totals.seen[(iid, "deleted")] - t for iid, t in deleted_at.items()
                 if (iid, "deleted") in run.totals.seen]
    ms = 1000.0
    return {"launches": n, "clients": clients,
            "launch_p50_ms": round(_pct(took, 0.5) * ms, 1),
            "launch_p99_ms": round(_pct(took, 0.99) * ms, 1),
            "launches_per_s": round(n / launch_wall, 1),
            "watch_p50_ms": round(_pct(watch, 0.5) * ms, 1),
            "watch_p99_ms": round(_pct(watch, 0.99) * ms, 1),
            "converged_s": round(converge, 2),
            "server_cpu_s_per_launch": round(cpu_launch / n, 4),
            "server_rss_mib_after_launch": round(rss_after_launch / 2**20, 1),
            "delete_p99_ms": round(_pct(delete_took, 0.99) * ms, 1),
            "delete_watch_p99_ms": round(_pct(watch_del, 0.99) * ms, 1),
            "deletes_gone_s": round(max(gone, delete_wall), 2),
            "server_cpu_s_per_delete": round(cpu_delete / n, 4)}


def _down(run: _Run, admin: str, gone: list[tuple[str, str]], sample: int) -> dict[str, Any]:
    """Worker 0 killed (its agents fall silent at once): seconds until `sample` of its hosts
    all show `down` in the API, against the goal of the heartbeat timeout + 5 s."""
    names = [name for name, _ in gone][:sample]
    run.workers[0].kill()
    with httpx.Client(base_url=run.url, timeout=60,
                      headers={"Authorization": f"Bearer {admin}"}) as http:
        def all_down() -> bool:
            return all(http.get(f"/v1/hosts/{n}").json().get("state") == "down" for n in names)
        took = run.wait(all_down, "silent hosts shown down", run.args.heartbeat_timeout + 120)
    return {"hosts_silenced": len(gone), "sampled": len(names), "detected_s": round(took, 1),
            "goal_s": run.args.heartbeat_timeout + 5}


def _any_left(url: str, headers: dict[str, str]) -> bool:
    """Any instance row left: one row asked for, not every row's view (polled every 0.2 s, a
    whole list of hundreds took the server's CPU from the deletes it measures)."""
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        return bool(http.get("/v1/instances", params={"limit": 1}).json()["items"])


def _states(url: str, headers: dict[str, str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    cursor: str | None = None
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        while True:
            params = {"limit": 500, **({"after": cursor} if cursor else {})}
            page = http.get("/v1/instances", params=params).json()
            counts.update(i["state"] for i in page["items"])
            cursor = page.get("next")
            if not cursor:
                return dict(counts)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="dy-hollow-"))
    run = _Run(args=args, home=home)
    api = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHostApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    api_url = f"http://127.0.0.1:{api.server_address[1]}"
    ctx = mp.get_context("spawn")
    result: dict[str, Any] = {"hosts": args.hosts, "db": args.db, "procs": args.procs,
                              "heartbeat_s": args.heartbeat, "label": args.label,
                              "commit": _commit(),
                              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        with _database(args.db, home) as db_url:
            t = time.monotonic()
            admin, agents = _mint(db_url, args.hosts)
            run.log(f"{args.hosts} host tokens minted in {time.monotonic() - t:.1f} s")
            _start_server(run, db_url, api_url)
            with httpx.Client(base_url=run.url, timeout=30,
                              headers={"Authorization": f"Bearer {admin}"}) as http:
                resp = http.post("/v1/networks", json={"name": "default", "subnet": SUBNET})
                if resp.status_code != 201:
                    raise RuntimeError(f"network: {resp.status_code} {resp.text[:300]}")
            run.out, run.stop = ctx.Queue(), ctx.Event()
            share = [agents[i::args.procs] for i in range(args.procs)]
            run.workers = [ctx.Process(target=_worker, args=(run.url, part, api_url,
                                                             args.heartbeat, run.out, run.stop))
                           for part in share]
            for w in run.workers:
                w.start()
            took = run.wait(lambda: run.totals.registered >= args.hosts, "registration",
                            max(120, args.hosts / 20))
            result["register_s"] = round(took, 1)
            run.log(f"{args.hosts} hollow agents registered in {took:.1f} s")
            time.sleep(args.settle)
            result["steady"] = _steady(run, args.steady)
            run.log(f"steady: {result['steady']}")
            if args.launches:
                try:
                    result["burst"] = _burst(run, args.launches, args.clients, admin)
                    run.log(f"burst: {result['burst']}")
                except (TimeoutError, RuntimeError) as exc:  # the steady state still counts
                    result["burst_error"] = str(exc)
                    run.log(f"burst failed: {exc}")
            result["errors"] = dict(run.totals.errors)
            result["db_bytes"] = _db_size(db_url, home)
            if args.down:
                try:
                    result["down"] = _down(run, admin, share[0], args.down)
                    run.log(f"down: {result['down']}")
                except (TimeoutError, RuntimeError) as exc:
                    result["down_error"] = str(exc)
    finally:
        _stop(run)
        api.shutdown()
        api.server_close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return result


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def _db_size(url: str, home: Path) -> int:
    if url.startswith("sqlite"):
        return sum(p.stat().st_size for p in home.glob("dockyard.db*"))
    import psycopg
    from sqlalchemy.engine import make_url
    u = make_url(url)
    with psycopg.connect(u.set(drivername="postgresql").render_as_string(
            hide_password=False)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _stop(run: _Run) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second `timeout` signal: finish this
    if run.server is not None and run.server.poll() is None:
        run.server.terminate()  # first: it must never outlive the run
    if run.stop is not None:
        run.stop.set()
    for w in run.workers:
        w.join(timeout=15)
        if w.is_alive():
            w.kill()
            w.join()
    if run.server is not None and run.server.poll() is None:
        run.server.terminate()
        try:
            run.server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            run.server.kill()
            run.server.wait()
    if run.log_file is not None:
        run.log_file.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--procs", type=int, default=2, help="worker processes")
    ap.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    ap.add_argument("--heartbeat-timeout", type=float, default=30.0)
    ap.add_argument("--down", type=int, default=20, help="at the end, kill one worker and "
                    "time until this many of its hosts show down (0: skip)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before steady state")
    ap.add_argument("--steady", type=float, default=20.0, help="seconds of steady state")
    ap.add_argument("--launches", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", type=Path, help="append the result (JSON lines)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary HOME")
    ap.add_argument("--label", default="", help="a name for this run's row (e.g. a variant)")
    args = ap.parse_args()
    # a `timeout` around the run: stop the server and the workers on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("hollow: terminated"))
    result = measure(args)
    print(json.dumps(result, indent=1))
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
    return 1 if result["errors"] or "burst_error" in result or "down_error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
