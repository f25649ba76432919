"""Server CPU per agent-feed request: heartbeat and watch round-trips against a real server.

    .venv/bin/python bench/feed_cost.py [--db sqlite|postgres] [--hosts 1000] [--calls 2000]
                                        [--profile DIR]

One `dockyard server` (as `bench/hollow.py` starts it), `--hosts` host tokens minted and each
host registered; then `--calls` heartbeats (`POST /v1/agent/heartbeat`, the same inventory)
and `--calls` watches (`GET /v1/agent/watch?timeout=0` with the revision and peer token the
host already has: the steady-state reply, nothing changed), spread round-robin over the hosts
from `--clients` threads. The server's CPU time (from /proc) divided by the calls is the
figure: what 10,000 hosts heartbeating every 10 s (1,000 calls/s) cost per call must stay
under ~1 ms for the whole to fit in one core. `--profile DIR`: py-spy (when installed)
records the server during each phase (`DIR/heartbeat.txt`, `DIR/watch.txt`, collapsed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from common import emit
from hollow import (
    SUBNET,
    _database,
    _FakeHostApi,
    _inventory,
    _mint,
    _proc_cpu,
    _Run,
    _start_server,
    _stop,
)

SPY = Path(sys.executable).parent / "py-spy"


def _phase(run: _Run, name: str, calls: int, clients: int, agents: list[tuple[str, str]],
           one: Any, profile: Path | None) -> dict[str, Any]:
    assert run.server is not None
    spy = None
    if profile is not None and SPY.exists():
        spy = subprocess.Popen([str(SPY), "record", "-p", str(run.server.pid), "-f", "raw",
                                "-o", str(profile / f"{name}.txt"), "-r", "200", "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    local = threading.local()

    def call(i: int) -> float:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(base_url=run.url, timeout=60)
        name_, token = agents[i % len(agents)]
        t0 = time.perf_counter()
        one(http, token, name_)
        return time.perf_counter() - t0

    cpu0, t0 = _proc_cpu(run.server.pid), time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        took = sorted(pool.map(call, range(calls)))
    wall = time.monotonic() - t0
    cpu = _proc_cpu(run.server.pid) - cpu0
    if spy is not None:
        spy.send_signal(2)
        spy.wait(timeout=60)
    return {"calls": calls, "wall_s": round(wall, 2), "per_s": round(calls / wall, 1),
            "server_cpu_ms_per_call": round(cpu / calls * 1000, 3),
            "p50_ms": round(took[len(took) // 2] * 1000, 2),
            "p99_ms": round(took[int(len(took) * 0.99)] * 1000, 2)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="dy-feedcost-"))
    run = _Run(args=argparse.Namespace(heartbeat_timeout=60.0), home=home)
    api = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHostApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    api_url = f"http://127.0.0.1:{api.server_address[1]}"
    states: dict[str, tuple[int, str]] = {}
    try:
        with _database(args.db, home) as db_url:
            admin, agents = _mint(db_url, args.hosts)
            _start_server(run, db_url, api_url)
            with httpx.Client(base_url=run.url, timeout=60) as http:
                resp = http.post("/v1/networks", json={"name": "default", "subnet": SUBNET},
                                 headers={"Authorization": f"Bearer {admin}"})
                resp.raise_for_status()
                for name, token in agents:
                    auth = {"Authorization": f"Bearer {token}"}
                    http.post("/v1/agent/register", headers=auth, json={
                        "name": name, "api_url": api_url, "api_secret": "s" * 16,
                        "inventory": _inventory(), "labels": {}}).raise_for_status()
                    reply = http.get("/v1/agent/watch", headers=auth,
                                     params={"since": 0, "timeout": 0, "peers": ""}).json()
                    states[name] = (reply["revision"], reply["peers_token"])

            def beat(http: httpx.Client, token: str, _name: str) -> None:
                resp = http.post("/v1/agent/heartbeat", json={"inventory": _inventory()},
                                 headers={"Authorization": f"Bearer {token}"})
                assert resp.status_code == 204, resp.text

            def watch(http: httpx.Client, token: str, name: str) -> None:
                since, peers = states[name]
                resp = http.get("/v1/agent/watch", headers={"Authorization": f"Bearer {token}"},
                                params={"since": since, "timeout": 0, "peers": peers})
                assert resp.status_code == 200, resp.text

            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
            return {"db": args.db, "hosts": args.hosts,
                    "heartbeat": _phase(run, "heartbeat", args.calls, args.clients, agents,
                                        beat, args.profile),
                    "watch": _phase(run, "watch", args.calls, args.clients, agents, watch,
                                    args.profile)}
    finally:
        _stop(run)
        api.shutdown()
        api.server_close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--out", type=Path, help="append the result (JSON lines)")
    args = ap.parse_args()
    result = {**measure(args), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
