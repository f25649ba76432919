"""Placements through the server's own path, on a store of 10,000 hosts (no Docker needed).

What `server/instances._commit` does for the capacity part of a launch, in one store
transaction each: `placement.cluster_view` (the capacity stamp, the down hosts, and the cached
snapshot brought up to date — or the whole store read and the index built when the cache
cannot be used), `scheduler.place`, the version CAS (`ledger.commit_placement`), the exclusive
cores and the instance row. Not included: the quota check, IP allocation, volumes, operation
and event rows, the revision bump (they do not depend on the number of hosts).

The store is a SQLite file in a temporary directory with the 10,000 synthetic hosts of
`bench/scheduler.py` (heartbeat now) and one instance per host already placed. Timed per
placement, wall clock, one thread:

* cached: the server's path as it is (`placement.cluster_view` with its cache);
* uncached: the same with the cache dropped before each placement (a full store read and
  index build per launch: what every launch paid before the cache), fewer placements.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler import HOSTS, NETWORKS, request_mix, synthetic_host

from dockyard.config import ServerSettings
from dockyard.errors import Conflict, NoValidHost
from dockyard.model.ids import new_id
from dockyard.scheduler import PlacementRequest, place
from dockyard.server import placement
from dockyard.server.bootstrap import init_store
from dockyard.store import ledger
from dockyard.store.db import Database
from dockyard.store.tables import HostRow, InstanceRow, NetworkRow

GOAL_P99_MS = 5.0
GOAL_PER_SECOND = 2_000.0


def _fill(db: Database, project: str, log: Callable[[str], None]) -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    with db.session() as sess:
        for net in NETWORKS:
            sess.add(NetworkRow(id=net, name=net, project_id=project, subnet="10.0.0.0/8",
                                gateway="10.0.0.1", dns=[], bridge=f"dyb{net[-5:]}"))
        sess.flush()
        for i in range(HOSTS):
            h = synthetic_host(rng, i)
            inventory = {"cores": h.cores, "memory_bytes": h.memory_bytes,
                         "pid_max": h.pids_limit_total, "disk_bytes": h.disk_bytes,
                         "labels": h.labels}
            sess.add(HostRow(id=h.id, name=h.name, version=0, draining=h.draining,
                             inventory=inventory, reserved_cores=h.reserved_cores, labels={},
                             last_heartbeat=now if h.up else None))
        sess.flush()
        for i in range(HOSTS):
            sess.add(_instance(project, f"{i:032x}", rng.choice([GIB // 2, 2 * GIB]), None))
    log(f"  store: {HOSTS} hosts, {HOSTS} instances")


GIB = 1 << 30


def _instance(project: str, host_id: str, memory: int | None, group: str | None) -> InstanceRow:
    iid = new_id()
    return InstanceRow(id=iid, name=f"i{iid}", project_id=project, host_id=host_id,
                       network_id=NETWORKS[0], image="busybox", hostname="i", ip="10.0.0.2",
                       mac="02:00:00:00:00:02", state="running", desired_state="running",
                       limits={"memory_bytes": memory, "pids": 4096},
                       options={"anti_affinity": group})


def _launch(db: Database, settings: ServerSettings, project: str,
            request: PlacementRequest, snap_times: list[float] | None = None) -> str:
    """One placement through the server's path; returns "placed", "refused" or "retried"."""
    try:
        with db.session() as sess:
            t0 = time.perf_counter()
            snap, versions = placement.cluster_view(sess, settings)
            if snap_times is not None:
                snap_times.append(time.perf_counter() - t0)
            plan = place(request, snap)
            ledger.commit_placement(sess, plan.host_id, versions[plan.host_id])
            row = _instance(project, plan.host_id, request.memory_bytes, request.anti_affinity)
            ledger.reserve_cores(sess, plan.host_id, plan.cores, row.id)
            sess.add(row)
    except NoValidHost:
        return "refused"
    except Conflict:
        return "retried"
    return "placed"


def _series(db: Database, settings: ServerSettings, project: str, n: int,
            rng: random.Random, cold: bool) -> dict[str, Any]:
    wall: list[float] = []
    snap: list[float] = []
    outcomes: dict[str, int] = {}
    before = dict(placement.stats)
    started = time.perf_counter()
    for _ in range(n):
        if cold:
            placement._cache.clear()
        t0 = time.perf_counter()
        outcome = _launch(db, settings, project, request_mix(rng), snap)
        wall.append(time.perf_counter() - t0)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    took = time.perf_counter() - started
    s, sn = sorted(wall), sorted(snap)
    return {"n": n, "snapshot_p50_ms": sn[len(sn) // 2] * 1e3,
            "snapshot_p99_ms": sn[min(len(sn) - 1, int(0.99 * len(sn)))] * 1e3,
            "p50_ms": s[len(s) // 2] * 1e3,
            "p99_ms": s[min(len(s) - 1, int(0.99 * len(s)))] * 1e3, "max_ms": s[-1] * 1e3,
            "per_second": n / took, "outcomes": outcomes,
            "cache": {k: placement.stats[k] - before.get(k, 0) for k in placement.stats}}


def bench_placement_path(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    n_cached, n_cold = (200, 10) if quick else (1000, 30)
    log(f"placement path: store with {HOSTS} hosts, {n_cached} placements cached, "
        f"{n_cold} uncached")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-placement-"))
    db = Database(f"sqlite:///{tmp / 'dockyard.db'}")
    try:
        project = init_store(db)
        _fill(db, project, log)
        settings = ServerSettings(home=tmp, memory_overcommit=1.5, heartbeat_timeout=3600)
        rng = random.Random(3)
        t0 = time.perf_counter()
        with db.read() as sess:
            placement._cache.clear()
            placement.cluster_view(sess, settings)
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(20):  # warm-up: memoized masks, SQLite page cache
            _launch(db, settings, project, request_mix(rng))
        cached = _series(db, settings, project, n_cached, rng, cold=False)
        cold = _series(db, settings, project, n_cold, rng, cold=True)
        log(f"  cached: p50 {cached['p50_ms']:.2f} ms, p99 {cached['p99_ms']:.2f} ms, "
            f"{cached['per_second']:.0f}/s {cached['cache']}; uncached: p50 "
            f"{cold['p50_ms']:.0f} ms, {cold['per_second']:.1f}/s; first snapshot "
            f"{first_ms:.0f} ms")
    finally:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
    ok = cached["p99_ms"] <= GOAL_P99_MS and cached["per_second"] >= GOAL_PER_SECOND
    return {"hosts": HOSTS, "cached": cached, "uncached": cold, "first_snapshot_ms": first_ms,
            "ok": ok}


def summary_row(r: dict[str, Any], pure: dict[str, Any] | None) -> str:
    c = r["cached"]
    detail = (f"; `place()` alone: p99 {pure['p99_ms']:.2f} ms CPU, "
              f"{pure['per_second']:,.0f}/s" if pure else "")
    return (f"| scheduler ({r['hosts']:,} hosts, server placement path, wall clock) | p99 "
            f"{c['p99_ms']:.2f} ms, {c['per_second']:,.0f} placements/s (uncached: "
            f"{r['uncached']['per_second']:.1f}/s{detail}) | kube-scheduler 100–300 pods/s | "
            f"- | p99 ≤ {GOAL_P99_MS:.0f} ms, ≥ {GOAL_PER_SECOND:,.0f}/s | "
            f"{'PASS' if r['ok'] else 'FAIL'} |")


def report_lines(r: dict[str, Any]) -> list[str]:
    c, u = r["cached"], r["uncached"]
    return [
        "", "## Scheduler through the server's placement path", "",
        f"`bench/placement_path.py`: a SQLite store with {r['hosts']:,} hosts (those of the "
        "synthetic snapshot below, heartbeat now) and one instance each; every placement is "
        "one store transaction as in `server/instances._commit`: `placement.cluster_view` (the "
        "capacity stamp, the down hosts, the cached snapshot brought up to date), "
        "`scheduler.place`, the version CAS, the cores and the instance row. Wall clock, one "
        "thread. *Uncached* drops the cache before each placement: a full store read and "
        "index build per launch, as every launch paid before the cache.", "",
        "| | placements | p50 ms | p99 ms | max ms | placements/s | of which "
        "`placement.cluster_view` p50 / p99 ms | outcomes | cache |",
        "|---|---|---|---|---|---|---|---|---|",
        *(f"| {label} | {s['n']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
          f"{s['max_ms']:.2f} | {s['per_second']:,.1f} | {s['snapshot_p50_ms']:.2f} / "
          f"{s['snapshot_p99_ms']:.2f} | {s['outcomes']} | {s['cache']} |"
          for label, s in (("cached (the server's path)", c), ("uncached", u))),
        "", f"First snapshot of the store (cache empty: read + index build): "
        f"{r['first_snapshot_ms']:.0f} ms. Goal p99 ≤ {GOAL_P99_MS:.0f} ms and "
        f"≥ {GOAL_PER_SECOND:,.0f} placements/s: **{'PASS' if r['ok'] else 'FAIL'}**.",
    ]
