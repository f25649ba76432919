"""The web console's server time (issue 14), in process: the real app (`create_app`) on a
SQLite store in a temporary directory, requests through httpx's ASGI transport (no socket, no
TLS: the time is the server's own — routing, session check, store reads, Jinja2 rendering).

The store: one host (heartbeat now, 64 cores), one network, INSTANCES running instances of
the `default` project (shared cores: each instance's cpuset is the host's shared pool,
resolved per shown instance as `GET /v1/instances` does), and for one of them 7 days of
10-second samples, compacted as the server keeps them (raw for 24 h, 10-minute rows before).

Timed (wall clock, one client, after one warm-up request each):
  list 100      GET /instances               the first page (100, by name)
  list 1,000    GET /instances?per=1000      every instance on one page
  list filtered GET /instances?q=…&sort=Memory&desc=1   filter + sort over all, page of 100
  detail        GET /instances/NAME          the detail page (limits, events, chart frames)
  7 d chart     GET /instances/NAME/stats?range=7d  the chart data of 7 days of samples
  overview      GET /
Bytes of a first visit: the login page and the overview after logging in, each with the
static files it names (stylesheet, scripts), as sent (no compression), and the instance and
terminal pages' extra files (uPlot, xterm.js).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from dockyard.config import ServerSettings
from dockyard.model.stats import InstanceSample
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token
from dockyard.store.stats import BUCKET
from dockyard.store.tables import HostRow, InstanceRow, NetworkRow, SampleRow

INSTANCES = 1000
GOAL_MS = 1000.0  # the issue: a page of 1,000 instances renders in under 1 s on the server
SAMPLE_EVERY = 10  # seconds, the collector's default interval
CHARTED = "web-0000"
ASSETS = re.compile(r'(?:href|src)="(/static/[^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _fill(app: Any, log: Callable[[str], None]) -> str:
    """The store as the docstring says; returns the admin's token."""
    ctx = app.state.ctx
    project = init_store(ctx.db)
    now = datetime.now(UTC)
    with ctx.db.session() as sess:
        sess.add(HostRow(id="h1", name="h1", last_heartbeat=now, api_url="https://127.0.0.1:1",
                         inventory={"cores": list(range(64)), "memory_bytes": 256 << 30}))
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.9.0.0/16",
                            gateway="10.9.0.1", bridge="dybench"))
        sess.flush()
        for i in range(INSTANCES):
            sess.add(InstanceRow(
                id=f"i{i:04d}", name=f"web-{i:04d}", project_id=project, host_id="h1",
                network_id="n1", image="dockyard/busybox:latest", hostname=f"web-{i:04d}",
                ip=f"10.9.{i // 250}.{i % 250 + 2}",
                mac=f"02:00:00:00:{i // 250:02x}:{i % 250:02x}",
                state="running", desired_state="running", generation=1,
                limits={"cores": 0, "memory_bytes": (64 + i % 512) << 20, "pids": 512}))
    log(f"  {INSTANCES} instances stored; 7 days of samples for {CHARTED} …")
    with ctx.db.session() as sess:  # as stats.compact leaves them: raw 24 h, 10-min before
        rows = []
        for k, (when, resolution) in enumerate(_sample_times(now)):
            sample = InstanceSample(instance_id="i0000", time=when, cpu_seconds=k * 0.5,
                                    memory_rss_bytes=(40 << 20) + (k % 97 << 16),
                                    memory_cache_bytes=10 << 20, memory_limit_bytes=64 << 20)
            rows.append(SampleRow(time=when, host_id="h1", instance_id="i0000",
                                  resolution=resolution, data=sample.model_dump(mode="json")))
        sess.add_all(rows)
    return mint_admin_token(ctx.db, project)


def _sample_times(now: datetime) -> list[tuple[datetime, int]]:
    """(time, resolution) of 7 days of one instance's stored samples: one a BUCKET (10 min)
    for the first 6 days, then one every SAMPLE_EVERY seconds for the last 24 h."""
    raw_from = now - timedelta(hours=24)
    start = now - timedelta(days=7)
    old = [(start + timedelta(seconds=k * BUCKET), BUCKET)
           for k in range(int((raw_from - start).total_seconds()) // BUCKET)]
    raw = [(raw_from + timedelta(seconds=k * SAMPLE_EVERY), 0)
           for k in range(int(timedelta(hours=24).total_seconds()) // SAMPLE_EVERY)]
    return old + raw


async def _login(client: httpx.AsyncClient, token: str) -> None:
    page = await client.get("/login")
    reply = await client.post("/login", data={"token": token,
                                              "csrf_token": CSRF.findall(page.text)[0]})
    assert reply.status_code == 303, reply.text


async def _timed(client: httpx.AsyncClient, path: str, runs: int) -> dict[str, float]:
    reply = await client.get(path)  # warm-up (templates compiled, caches filled)
    assert reply.status_code == 200, (path, reply.status_code, reply.text[-300:])
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        reply = await client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200
    times.sort()
    return {"n": runs, "p50_ms": times[len(times) // 2],
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
            "max_ms": times[-1], "bytes": len(reply.content)}


async def _page_bytes(client: httpx.AsyncClient, path: str, seen: set[str]) -> int:
    """The page and the static files it names that this visit has not fetched yet."""
    page = await client.get(path)
    total = len(page.content)
    for asset in ASSETS.findall(page.text):
        if asset not in seen:
            seen.add(asset)
            total += len((await client.get(asset)).content)
    return total


async def _run(app: Any, token: str, quick: bool) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        seen: set[str] = set()
        first = await _page_bytes(client, "/login", seen)
        await _login(client, token)
        first += await _page_bytes(client, "/", seen)
        instance_extra = await _page_bytes(client, f"/instances/{CHARTED}", seen)
        terminal_extra = await _page_bytes(client, f"/instances/{CHARTED}/terminal", seen)
        runs = 10 if quick else 40
        cases = {
            "list 100": "/instances",
            "list 1,000": "/instances?per=1000",
            "list filtered": "/instances?q=web-01&sort=Memory&desc=1",
            "detail": f"/instances/{CHARTED}",
            "7 d chart": f"/instances/{CHARTED}/stats?range=7d",
            "overview": "/",
        }
        timed = {}
        for label, path in cases.items():
            timed[label] = await _timed(client, path, runs // 4 if "1,000" in label else runs)
    return {"first_visit_bytes": first, "instance_page_extra_bytes": instance_extra,
            "terminal_page_extra_bytes": terminal_extra, "timed": timed}


def bench_console(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="dy-bench-console-"))
    try:
        app = create_app(ServerSettings(home=root / "home", registry_url="http://127.0.0.1:1"))
        try:
            token = _fill(app, log)
            result = asyncio.run(_run(app, token, quick))
        finally:
            app.state.ctx.db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["instances"] = INSTANCES
    worst = max(result["timed"]["list 1,000"]["p50_ms"], result["timed"]["list 100"]["p99_ms"])
    result["ok"] = worst < GOAL_MS
    for label, t in result["timed"].items():
        log(f"  {label}: p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms, {t['bytes']:,} B")
    return result


def summary_row(r: dict[str, Any]) -> str:
    t = r["timed"]
    return (f"| web console ({r['instances']:,} instances stored, server time) | instance list "
            f"p50/p99 {t['list 100']['p50_ms']:.0f}/{t['list 100']['p99_ms']:.0f} ms a page of "
            f"100, {t['list 1,000']['p50_ms']:.0f}/{t['list 1,000']['p99_ms']:.0f} ms all "
            f"1,000; detail {t['detail']['p50_ms']:.0f}/{t['detail']['p99_ms']:.0f} ms, 7 d "
            f"chart {t['7 d chart']['p50_ms']:.0f}/{t['7 d chart']['p99_ms']:.0f} ms; first "
            f"visit {r['first_visit_bytes'] / 1024:.0f} KiB | - | - | page of 1,000 < "
            f"{GOAL_MS / 1000:.0f} s | {'PASS' if r['ok'] else 'FAIL'} |")


def report_lines(r: dict[str, Any]) -> list[str]:
    return [
        "", "## Web console", "",
        f"`bench/console.py`: the real app in process (httpx's ASGI transport: no socket, no "
        f"TLS) on a SQLite store with {r['instances']:,} running instances of one project on "
        "one host (shared cores: each shown instance's cpuset resolved as the API does) and 7 "
        "days of 10-second samples of one instance, compacted as the server keeps them. Wall "
        "clock per request after a warm-up, one client.", "",
        "| page | requests | p50 ms | p99 ms | max ms | bytes |",
        "|---|---|---|---|---|---|",
        *(f"| {label} | {t['n']} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | {t['max_ms']:.1f} "
          f"| {t['bytes']:,} |" for label, t in r["timed"].items()),
        "", f"First visit (the login page and the overview with the files they name, "
        f"uncompressed): {r['first_visit_bytes']:,} bytes; the instance page adds "
        f"{r['instance_page_extra_bytes']:,} (uPlot, charts.js), the terminal page "
        f"{r['terminal_page_extra_bytes']:,} (xterm.js). Goal: a page of 1,000 instances "
        f"under {GOAL_MS / 1000:.0f} s on the server: **{'PASS' if r['ok'] else 'FAIL'}**.",
    ]
