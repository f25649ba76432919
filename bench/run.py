"""Dockyard benchmarks against raw Docker, in the same run, reported as ratios.

    .venv/bin/python bench/run.py [--quick] [--only create,burst,network,scheduler,live]
                                  [--out FILE] [--runs N]

Without --only (what `make bench` runs) every benchmark below runs, in one run.

Benchmarks (they are not tests; they write bench/RESULTS.md):
  create   sequential launches: POST /v1/instances?wait=true until the IP answers ping, vs
           `docker run -d --network none` + raw_plumb.sh until the IP answers ping (alternated)
  burst    N concurrent launches (threads) vs N concurrent docker run + plumbing, at least
           4 rounds per side; throughput = instances reachable by ping per second; verdict on
           the median round, every round and the spread reported
  network  iperf3 between two Dockyard instances on the default bridge vs a bare veth pair
           between two network namespaces with the same GSO/GRO (BIG TCP) size as Dockyard's
           veths (the verdict), and vs the kernel's default veth pair (shown beside it)
  collector  the whole agent process's CPU and RSS (/proc) at steady state with 10, 100, 300
           instances; the in-process Collector.collect() cost beside it (bench/collector.py)
  scheduler  scheduler.place on a synthetic 10,000-host snapshot: p50/p99 latency and
           placements per second on one core (bench/scheduler.py; no Docker needed)
  placement  the server's placement path (store snapshot + index + place + commit) on a
           10,000-host store (bench/placement_path.py; no Docker needed)
  migrate  cold migration downtime by ping (busybox and machine image) on a dev-cluster of
           its own (bench/migrate.py)
  live     live (CRIU) vs cold migration downtime of the same instance, by ping, on a
           dev-cluster --criu of its own (bench/live_migrate.py)
  cli      CLI start-up vs `docker ps` (bench/cli_startup.py, when present)
  console  the web console's server time with 1,000 instances stored (instance list, detail,
           the 7-day chart) and the bytes of a first visit (bench/console.py; no Docker)
  push     git push → the new version served by the stacks' entrance (webhook, build, push,
           rolling update), median of 5, with its parts, vs the same steps typed by hand
           (git clone, docker build, docker push, stack deploy), alternated; its own Dockyard
           (bench/push_deploy.py)
  stacks   `stack deploy` of 10 services × 3 replicas until all healthy vs the same 30
           instances launched one by one through the API; a rolling update of 10 replicas
           (parallelism 2) behind the entrance with a client every 20 ms: time and failed
           requests, vs the same update all at once; its own Dockyard (bench/stacks.py)
With --only, the other benchmarks' rows are carried over from the previous RESULTS.json with
the commit and time they were measured at; each summary row says when it was measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_startup  # noqa: E402
from collector import bench_collector, child_pid, cpu_seconds, report_lines  # noqa: E402
from collector import summary_row as collector_row  # noqa: E402
from common import (  # noqa: E402
    BENCH,
    PrivateDockyard,
    RawNet,
    bench_tag,
    container_pid,
    machine_facts,
    pick_octets,
    ping_until,
    quiet,
    run,
    sigterm_as_interrupt,
    stats,
)
from console import bench_console  # noqa: E402
from console import report_lines as console_lines  # noqa: E402
from console import summary_row as console_row  # noqa: E402
from live_migrate import bench_live  # noqa: E402
from live_migrate import report_lines as live_lines  # noqa: E402
from live_migrate import summary_row as live_row  # noqa: E402
from migrate import bench_migrate  # noqa: E402
from migrate import report_lines as migrate_lines  # noqa: E402
from migrate import summary_row as migrate_row  # noqa: E402
from placement_path import bench_placement_path  # noqa: E402
from placement_path import report_lines as placement_lines  # noqa: E402
from placement_path import summary_row as placement_row  # noqa: E402
from push_deploy import bench_push_deploy  # noqa: E402
from push_deploy import report_lines as push_lines  # noqa: E402
from push_deploy import summary_row as push_row  # noqa: E402
from scheduler import bench_scheduler  # noqa: E402
from scheduler import report_lines as scheduler_lines  # noqa: E402
from scheduler import summary_row as scheduler_row  # noqa: E402
from stacks import bench_stacks  # noqa: E402
from stacks import report_lines as stacks_lines  # noqa: E402
from stacks import summary_row as stacks_row  # noqa: E402

from dockyard.adapters import netlink  # noqa: E402
from dockyard.model import ids  # noqa: E402

GOALS = {"create": ("≤", 1.15), "burst": ("≥", 0.9), "network": ("≥", 0.95)}
BURST_MIN_ROUNDS = 4  # a verdict on fewer rounds is not given (round-to-round spread ±15 %)
ALL = ("create", "burst", "network", "collector", "scheduler", "placement", "migrate", "live",
       "cli", "push", "console", "stacks")


def bench_cli(runs: int) -> dict[str, Any]:
    """CLI start-up vs `docker ps`: bench/cli_startup.py's `run(runs) -> dict`."""
    result: dict[str, Any] = cli_startup.run(runs=runs)
    return result


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def verdict(kind: str, ratio: float) -> str:
    op, goal = GOALS[kind]
    ok = ratio <= goal if op == "≤" else ratio >= goal
    return "PASS" if ok else "FAIL"


# -- docker events (for the per-step breakdown) ------------------------------------------------

def docker_events(since: float, until: float, label: str) -> dict[str, dict[str, float]]:
    """name → {"create": t, "start": t} (wall-clock seconds) from `docker events`."""
    out = run(["docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
               "--filter", "type=container", "--filter", f"label={label}",
               "--format", "{{json .}}"], check=False, timeout=60)
    result: dict[str, dict[str, float]] = {}
    for line in out.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        name = (ev.get("Actor") or {}).get("Attributes", {}).get("name", "")
        status = ev.get("status") or ev.get("Action")
        if status in ("create", "start") and name:
            result.setdefault(name, {}).setdefault(status, ev["timeNano"] / 1e9)
    return result


# -- create latency ----------------------------------------------------------------------------

def one_dockyard(dy: PrivateDockyard, name: str) -> dict[str, Any]:
    t0 = time.time()
    m0 = time.monotonic()
    body = dy.launch(name)
    m1 = time.monotonic()
    t_ping, attempts = ping_until(body["ip"])
    return {"name": name, "container": f"dy-{body['id']}", "ip": body["ip"], "wall0": t0,
            "api": m1 - m0, "total": t_ping - m0, "ping": t_ping - m1, "attempts": attempts,
            "api_end_wall": t0 + (m1 - m0)}


def one_raw(raw: RawNet, name: str) -> dict[str, Any]:
    t0 = time.time()
    m0 = time.monotonic()
    inst = raw.launch(name)
    m1 = time.monotonic()
    t_ping, attempts = ping_until(inst.ip)
    return {"name": name, "container": name, "ip": inst.ip, "wall0": t0,
            "docker_run": inst.timings["docker_run"], "plumb": inst.timings["plumb"],
            "api": m1 - m0, "total": t_ping - m0, "ping": t_ping - m1, "attempts": attempts,
            "run_end_wall": t0 + inst.timings["docker_run"]}


def attach_events(samples: list[dict[str, Any]], label: str, since: float) -> None:
    evs = docker_events(since - 1, time.time() + 1, label)
    for s in samples:
        e = evs.get(s["container"], {})
        if "create" in e and "start" in e:
            s["to_create_event"] = e["create"] - s["wall0"]
            s["create_to_start"] = e["start"] - e["create"]
            end = s.get("api_end_wall") or s.get("run_end_wall")
            s["start_to_return"] = end - e["start"]


def bench_create(dy: PrivateDockyard, raw: RawNet, n: int) -> dict[str, Any]:
    log(f"create latency: {n} sequential launches each, alternated")
    since = time.time()
    # warm-up (not measured): first launch pays image/bridge/cache costs on both sides
    one_dockyard(dy, "warm-dy")
    dy.delete("warm-dy")
    one_raw(raw, "warm-raw-" + raw.tag)
    raw.delete("warm-raw-" + raw.tag)
    d_samples: list[dict[str, Any]] = []
    r_samples: list[dict[str, Any]] = []
    for i in range(n):
        order = ("dy", "raw") if i % 2 == 0 else ("raw", "dy")
        for kind in order:
            if kind == "dy":
                s = one_dockyard(dy, f"lat{i}")
                d_samples.append(s)
                dy.delete(f"lat{i}")
            else:
                name = f"rawlat{i}-{raw.tag}"
                s = one_raw(raw, name)
                r_samples.append(s)
                raw.delete(name)
        log(f"  {i + 1}/{n}: dockyard {ms(d_samples[-1]['total'])} ms, "
            f"raw {ms(r_samples[-1]['total'])} ms")
    attach_events(d_samples, f"dockyard.cluster={dy.cluster}", since)
    attach_events(r_samples, f"dockyard.bench={raw.tag}", since)
    d, r = stats([s["total"] for s in d_samples]), stats([s["total"] for s in r_samples])
    return {"n": n, "dockyard": d, "raw": r, "ratio": d["median"] / r["median"],
            "dy_samples": d_samples, "raw_samples": r_samples}


# -- burst -------------------------------------------------------------------------------------

def burst_round(kind: str, n: int, dy: PrivateDockyard, raw: RawNet, rnd: int) -> dict[str, Any]:
    names = [f"b{rnd}x{i}" if kind == "dy" else f"rawb{rnd}x{i}-{raw.tag}" for i in range(n)]
    barrier = threading.Barrier(n)

    def one(name: str) -> tuple[float, float, float]:
        barrier.wait()
        m0 = time.monotonic()
        ip = dy.launch(name)["ip"] if kind == "dy" else raw.launch(name).ip
        m1 = time.monotonic()
        t, _ = ping_until(ip, 120)
        return m0, m1, t

    cpu0 = process_cpu(dy) if kind == "dy" else {}
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, names))
    cpu = {k: (v - cpu0[k]) / n for k, v in process_cpu(dy).items()} if kind == "dy" else {}
    t0 = min(r[0] for r in results)
    t_end = max(r[2] for r in results)
    per = [r[2] - r[0] for r in results]
    launch = [r[1] - r[0] for r in results]
    last_launch = max(r[1] for r in results) - t0
    wall = t_end - t0
    # clean up (not measured)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(dy.delete if kind == "dy" else raw.delete, names))
    return {"kind": kind, "n": n, "wall": wall, "throughput": n / wall, "per": stats(per),
            "launch": stats(launch), "last_launch": last_launch, "cpu_per_launch": cpu}


def process_cpu(dy: PrivateDockyard) -> dict[str, float]:
    """CPU seconds (user + system) so far of the `dockyard up` server and agent processes."""
    return {role: cpu_seconds(child_pid(dy, role)) for role in ("server", "agent")}


def bench_burst(dy: PrivateDockyard, raw: RawNet, n: int, rounds: int) -> dict[str, Any]:
    log(f"burst: {n} concurrent launches, {rounds} round(s) each, alternated")
    res: dict[str, list[dict[str, Any]]] = {"dy": [], "raw": []}
    for rnd in range(rounds):
        order = ("dy", "raw") if rnd % 2 == 0 else ("raw", "dy")
        for kind in order:
            r = burst_round(kind, n, dy, raw, rnd)
            res[kind].append(r)
            cpu = "".join(f", {k} {v * 1000:.0f} ms CPU/launch"
                          for k, v in r["cpu_per_launch"].items())
            log(f"  round {rnd + 1} {kind}: {n} reachable in {r['wall']:.2f} s "
                f"= {r['throughput']:.2f}/s (per-instance median {ms(r['per']['median'])} ms"
                f"{cpu})")
    d = stats([r["throughput"] for r in res["dy"]])
    w = stats([r["throughput"] for r in res["raw"]])
    per_round = [a["throughput"] / b["throughput"] for a, b in zip(res["dy"], res["raw"],
                                                                    strict=True)]
    cpu = {role: stats([r["cpu_per_launch"][role] for r in res["dy"]])
           for role in ("server", "agent")}
    return {"n": n, "rounds": rounds, "dockyard": d, "raw": w, "ratio": d["median"] / w["median"],
            "round_ratios": per_round, "detail": res, "cpu_per_launch": cpu}


def burst_verdict(b: dict[str, Any]) -> str:
    if b["rounds"] < BURST_MIN_ROUNDS:
        return f"NO VERDICT ({b['rounds']} round(s) < {BURST_MIN_ROUNDS})"
    return verdict("burst", b["ratio"])


# -- network -----------------------------------------------------------------------------------

def _pinning() -> tuple[list[str], list[str]]:
    """taskset prefixes for the iperf3 server and client: one CPU each (0 and 1) when the
    machine has two or more, the same for every side, so no side gets a luckier placement."""
    if len(os.sched_getaffinity(0)) < 2:
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def iperf(server_ns: str, client_ns: str, server_ip: str, seconds: int) -> float:
    """One iperf3 TCP run (received Gbit/s). Every side is entered the same way: `nsenter
    --net=FILE` (an instance's /proc/PID/ns/net or a /run/netns file), server pinned to CPU 0,
    client to CPU 1, the same iperf3 options."""
    pin_server, pin_client = _pinning()
    errors = []
    for _ in range(5):
        srv = subprocess.Popen(["nsenter", f"--net={server_ns}", *pin_server, "iperf3", "-s",
                                "-1", "-B", server_ip, "-p", "5201"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)  # let the server listen
            r = subprocess.run(["nsenter", f"--net={client_ns}", *pin_client, "iperf3", "-c",
                                server_ip, "-p", "5201", "-t", str(seconds), "-J"],
                               capture_output=True, text=True, timeout=seconds + 30)
            try:
                data = json.loads(r.stdout)
                return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
            except (ValueError, KeyError):
                errors.append(f"rc={r.returncode} {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
                log(f"  iperf3 attempt failed: {errors[-1]}")
        finally:
            if srv.poll() is None:
                srv.terminate()
            try:
                srv.wait(timeout=5)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
    raise RuntimeError(f"iperf3 failed: {errors}")


def _veth_pair(ns_a: str, ns_b: str, va: str, vb: str, ip_a: str, ip_b: str,
               gso: int | None = None) -> None:
    """A bare veth pair between two new netns; `gso` sets both ends' IPv4 GSO/GRO size
    first (what Dockyard gives instance veths) before they move into the namespaces."""
    run(["ip", "netns", "add", ns_a])
    run(["ip", "netns", "add", ns_b])
    run(["ip", "link", "add", va, "type", "veth", "peer", "name", vb])
    if gso is not None:
        netlink.set_ipv4_gso_sizes(va, gso)
        netlink.set_ipv4_gso_sizes(vb, gso)
    for ns, dev, ip in ((ns_a, va, ip_a), (ns_b, vb, ip_b)):
        run(["ip", "link", "set", dev, "netns", ns])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])


NET_SIDES = {  # key: label in the report; only "dy" / "floor" count for the goal
    "dy": "Dockyard (bridge)",
    "floor": "veth pair (floor)",
    "bridge": "diagnostic: plain bridge made by the benchmark, two netns, same DOCKER-USER "
              "rule, default veths",
    "floor_big": "diagnostic: veth pair with Dockyard's veth setting (IPv4 GSO/GRO size as "
                 "plumb sets it)",
}


def bench_network(dy: PrivateDockyard, octet: int, tag: str, seconds: int,
                  runs: int) -> dict[str, Any]:
    log(f"network: iperf3 {seconds} s × {runs} runs, Dockyard bridge vs bare veth pair")
    a = dy.launch("net-a")
    b = dy.launch("net-b")
    ns_a, ns_b = f"ybn{tag}a", f"ybn{tag}b"
    ip_a, ip_b = f"10.244.{octet}.1", f"10.244.{octet}.2"
    # diagnostic (no goal): the same two namespaces' traffic over a plain Linux bridge made
    # here, with the same DOCKER-USER accept rule as Dockyard's; separates the cost of
    # bridge + br_netfilter from anything Dockyard itself adds
    ns_c, ns_d, br = f"ybn{tag}c", f"ybn{tag}d", f"ybb{tag}"
    ip_c, ip_d = f"10.244.{octet}.11", f"10.244.{octet}.12"
    # diagnostic (no goal): a bare veth pair with the GSO/GRO size Dockyard gives its veths,
    # the floor under the same setting (the floor itself keeps the kernel's defaults)
    ns_e, ns_f = f"ybn{tag}e", f"ybn{tag}f"
    ip_e, ip_f = f"10.244.{octet}.21", f"10.244.{octet}.22"
    res: dict[str, list[float]] = {key: [] for key in NET_SIDES}
    try:
        pa, pb = container_pid(a["container_id"]), container_pid(b["container_id"])
        ping_until(a["ip"])
        ping_until(b["ip"])
        big, _ = netlink.ipv4_gso_sizes(ids.host_veth_name(a["id"]))
        _veth_pair(ns_a, ns_b, f"ybv{tag}a", f"ybv{tag}b", ip_a, ip_b)
        _veth_pair(ns_e, ns_f, f"ybv{tag}e", f"ybv{tag}f", ip_e, ip_f, big)
        run(["ip", "link", "add", br, "type", "bridge"])
        run(["ip", "link", "set", br, "up"])
        run(["iptables", "-w", "-I", "DOCKER-USER", "-i", br, "-o", br, "-j", "ACCEPT"])
        for ns, ip, n in ((ns_c, ip_c, "c"), (ns_d, ip_d, "d")):
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", f"ybh{tag}{n}", "type", "veth", "peer", "name", "eth0",
                 "netns", ns])
            run(["ip", "link", "set", f"ybh{tag}{n}", "master", br, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        sides = {"dy": (f"/proc/{pa}/ns/net", f"/proc/{pb}/ns/net", a["ip"]),
                 "floor": (f"/run/netns/{ns_a}", f"/run/netns/{ns_b}", ip_a),
                 "bridge": (f"/run/netns/{ns_c}", f"/run/netns/{ns_d}", ip_c),
                 "floor_big": (f"/run/netns/{ns_e}", f"/run/netns/{ns_f}", ip_e)}
        keys = list(sides)
        for i in range(runs):
            order = keys[i % len(keys):] + keys[:i % len(keys)]  # rotate, then alternate
            for kind in (order if i % 2 == 0 else order[::-1]):
                res[kind].append(iperf(*sides[kind], seconds))
            log(f"  run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in res.items()))
    finally:
        for ns in (ns_a, ns_b, ns_c, ns_d, ns_e, ns_f):
            quiet(["ip", "netns", "del", ns])
        quiet(["ip", "link", "del", br])
        quiet(["iptables", "-w", "-D", "DOCKER-USER", "-i", br, "-o", br, "-j", "ACCEPT"])
        for name in ("net-a", "net-b"):
            try:
                dy.delete(name)
            except Exception as exc:  # the Dockyard stop removes its containers anyway
                log(f"  delete {name}: {exc}")
    d, f, fb = stats(res["dy"]), stats(res["floor"]), stats(res["floor_big"])
    # the verdict is like for like: both sides with the GSO/GRO size Dockyard gives its veths
    return {"seconds": seconds, "runs": runs, "dockyard": d, "floor": f,
            "ratio": d["median"] / fb["median"], "ratio_default_floor": d["median"] / f["median"],
            "like_for_like": True, "dy_runs": res["dy"],
            "floor_runs": res["floor"], "bridge": stats(res["bridge"]),
            "bridge_runs": res["bridge"], "floor_big": stats(res["floor_big"]),
            "floor_big_runs": res["floor_big"], "gso_size": big,
            "pinned": bool(_pinning()[0])}


# -- report ------------------------------------------------------------------------------------

def breakdown(samples: list[dict[str, Any]], keys: list[tuple[str, str]]) -> list[str]:
    rows = []
    for key, label in keys:
        vals = [s[key] for s in samples if key in s]
        if vals:
            st = stats(vals)
            rows.append(f"| {label} | {ms(st['median'])} | {ms(st['p90'])} |")
    return rows


def measured_cell(r: dict[str, Any]) -> str:
    m = r.get("measured") or {}
    return f"{m.get('commit', '?')}, {m.get('at', '?')}"


def header_lines(results: dict[str, Any], now: str, took: float, quick: bool,
                 this_run: set[str] | None) -> list[str]:
    if this_run is None:  # a RESULTS.json from before rows were dated
        return [f"Re-rendered from a RESULTS.json generated on {now} that does not record "
                "which rows that run measured and which it carried over; rows without a "
                "commit were not dated."]
    ran = sorted(k for k in results if k in this_run)
    carried = sorted(k for k in results if k not in this_run)
    lines = [f"Generated by `bench/run.py{' --quick' if quick else ''}` on {now} (this run "
             f"took {took:.0f} s and measured: {', '.join(ran) or 'nothing'})."]
    if carried:
        lines.append(f"**Not one run**: {', '.join(carried)} were carried over from earlier "
                     "runs (`--only`); each row below gives the commit and time it was "
                     "measured at, and rows of different runs were not measured side by side.")
    else:
        lines.append("Every row below was measured in this one run.")
    lines.append("Benchmarks, not tests: within each row Dockyard and its baseline run "
                 "alternately and are compared as ratios.")
    return [" ".join(lines)]


def summary_rows(results: dict[str, Any]) -> list[str]:
    c, b, n = results.get("create"), results.get("burst"), results.get("network")
    rows: list[tuple[dict[str, Any], str]] = []
    if c:
        rows.append((c, f"| create latency | {ms(c['dockyard']['median'])} ms | "
                        f"{ms(c['raw']['median'])} ms | {c['ratio']:.2f} | ≤ 1.15 | "
                        f"{verdict('create', c['ratio'])} |"))
    if b:
        rr = b.get("round_ratios") or []
        spread = (f"; rounds {min(rr):.2f}–{max(rr):.2f}" if rr else "")
        rows.append((b, f"| burst throughput ({b['n']}, median of {b['rounds']} rounds"
                        f"{spread}) | {b['dockyard']['median']:.2f}/s | "
                        f"{b['raw']['median']:.2f}/s | {b['ratio']:.2f} | ≥ 0.90 | "
                        f"{burst_verdict(b)} |"))
    if n:
        if n.get("like_for_like"):
            rows.append((n, f"| network throughput (like for like: both sides' veths with "
                            f"GSO/GRO {n.get('gso_size')}) | {n['dockyard']['median']:.2f} "
                            f"Gbit/s | {n['floor_big']['median']:.2f} Gbit/s | "
                            f"{n['ratio']:.3f} (vs the default-veth floor "
                            f"{n['floor']['median']:.2f} Gbit/s: "
                            f"{n['ratio_default_floor']:.2f}) | ≥ 0.95 | "
                            f"{verdict('network', n['ratio'])} |"))
        else:  # a row from before the like-for-like verdict
            rows.append((n, f"| network throughput (vs the default-veth floor: not like for "
                            f"like) | {n['dockyard']['median']:.2f} Gbit/s | "
                            f"{n['floor']['median']:.2f} Gbit/s | {n['ratio']:.2f} | ≥ 0.95 | "
                            f"{verdict('network', n['ratio'])} |"))
    if results.get("console"):
        rows.append((results["console"], console_row(results["console"])))
    if results.get("placement"):
        rows.append((results["placement"],
                     placement_row(results["placement"], results.get("scheduler"))))
    if results.get("scheduler") and not results.get("placement"):
        # alone only when the server's path was not measured (it carries this figure beside)
        rows.append((results["scheduler"], scheduler_row(results["scheduler"])))
    if results.get("migrate"):
        rows.append((results["migrate"], migrate_row(results["migrate"])))
    if results.get("live"):
        rows.append((results["live"], live_row(results["live"])))
    col = results.get("collector")
    if col:
        rows.append((col, collector_row(col)))
    cli = results.get("cli")
    if cli:
        rows.append((cli, cli_row(cli)))
    if results.get("push"):
        rows.append((results["push"], push_row(results["push"])))
    if results.get("stacks"):
        rows.append((results["stacks"], stacks_row(results["stacks"])))
    return [line.rstrip().removesuffix("|").rstrip() + f" | {measured_cell(r)} |"
            for r, line in rows]


def cli_row(r: dict[str, Any]) -> str:
    """From bench/cli_startup.py's `run()`: `dockyard list` (against a server that refuses at
    once) vs `docker ps`, median wall; goal ≤ goal_s for `dockyard list` and its --help."""
    wall = r["wall"]
    dy, docker = wall["dockyard list"]["median"], wall.get("docker ps", {}).get("median")
    ratio = f"{dy / docker:.2f}" if docker else "-"
    base = f"`docker ps` {docker * 1000:.0f} ms" if docker else "-"
    return (f"| CLI start-up (`dockyard list`, median of {r['runs']}; `list --help` "
            f"{wall['dockyard list --help']['median'] * 1000:.0f} ms) | {dy * 1000:.0f} ms | "
            f"{base} | {ratio} | ≤ {r['goal_s'] * 1000:.0f} ms | "
            f"{'PASS' if r['goal_met'] else 'FAIL'} |")


def report(results: dict[str, Any], facts: dict[str, str], quick: bool, took: float,
           failed: dict[str, str], now: str, this_run: set[str] | None) -> str:
    lines = [
        "# Dockyard benchmark results", "",
        *header_lines(results, now, took, quick, this_run), "",
        "## Machine", "",
        f"- nproc: {facts['nproc']} ({facts['cpu']}), memory {facts['memory']}",
        f"- kernel: {facts['kernel']}",
        f"- docker: {facts['docker']}", "",
        "## Summary", "",
        "| benchmark | Dockyard (median) | baseline (median) | ratio | goal | result | "
        "measured (commit, UTC) |",
        "|---|---|---|---|---|---|---|",
        *summary_rows(results),
    ]
    c, b, n = results.get("create"), results.get("burst"), results.get("network")
    if c:
        lines += [
            "", "## Create latency", "",
            f"{c['n']} sequential launches each, alternating Dockyard and raw (a warm-up launch "
            "of each first, not counted). Time from the request until the instance IP answers "
            "one `ping -c1 -W1` from the host (retried every 10 ms). Each instance is deleted "
            "after it answered (not timed).", "",
            "- Dockyard: `POST /v1/instances?wait=true` `{name, image: dockyard/busybox:latest}` "
            "(httpx, keep-alive), then ping the returned `ip`.",
            "- raw: `docker run -d --network none dockyard/busybox:latest` (CLI), then "
            "`bench/raw_plumb.sh` (veth pair, peer into the netns by PID, rename eth0, MAC, "
            "address, lo+eth0 up, default route; host end on a benchmark bridge with a gateway "
            "address and an `iptables -I DOCKER-USER -i BR -o BR -j ACCEPT` rule), then ping.", "",
            "| | median ms | p90 ms | min ms | max ms |", "|---|---|---|---|---|",
            f"| Dockyard | {ms(c['dockyard']['median'])} | {ms(c['dockyard']['p90'])} | "
            f"{ms(c['dockyard']['min'])} | {ms(c['dockyard']['max'])} |",
            f"| raw docker + script | {ms(c['raw']['median'])} | {ms(c['raw']['p90'])} | "
            f"{ms(c['raw']['min'])} | {ms(c['raw']['max'])} |",
            f"| **ratio dockyard/raw** | **{c['ratio']:.2f}** (goal ≤ 1.15: "
            f"{verdict('create', c['ratio'])}) | | | |", "",
            "Where the time goes (medians; step boundaries from client timestamps and "
            "`docker events` create/start times, wall clock):", "",
            "| Dockyard step | median ms | p90 ms |", "|---|---|---|",
            *breakdown(c["dy_samples"], [
                ("to_create_event", "POST sent → container `create` event (server accepts, "
                 "agent watch wakes, files, docker create)"),
                ("create_to_start", "`create` → `start` event (docker start)"),
                ("start_to_return", "`start` event → API response (inspect, plumbing, report, "
                 "wait wakes)"),
                ("api", "POST total (until the 201 response)"),
                ("ping", "response → first ping reply"),
                ("total", "total")]),
            "", "| raw step | median ms | p90 ms |", "|---|---|---|",
            *breakdown(c["raw_samples"], [
                ("to_create_event", "`docker run` exec → `create` event"),
                ("create_to_start", "`create` → `start` event"),
                ("start_to_return", "`start` event → `docker run` returns"),
                ("docker_run", "`docker run` total"),
                ("plumb", "raw_plumb.sh"),
                ("ping", "script end → first ping reply"),
                ("total", "total")]),
        ]
    if b:
        lines += [
            "", "## Burst", "",
            f"{b['n']} launches started at once (threads released by a barrier), "
            f"{b['rounds']} round(s) per side, sides alternated. Throughput = {b['n']} / "
            "(time from the first request until the last instance answered ping). Instances "
            "are deleted between rounds (not timed).", "",
            "| round | side | wall s | instances/s | per-instance median ms | p90 ms | "
            "launch call median ms (API / docker run+script) | last launch call returned s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind, label in (("dy", "Dockyard"), ("raw", "raw")):
            for i, r in enumerate(b["detail"][kind]):
                lines.append(f"| {i + 1} | {label} | {r['wall']:.2f} | {r['throughput']:.2f} | "
                             f"{ms(r['per']['median'])} | {ms(r['per']['p90'])} | "
                             f"{ms(r['launch']['median'])} | {r['last_launch']:.2f} |")
        rr = b.get("round_ratios") or []
        lines += ["", f"Median throughput over {b['rounds']} rounds: Dockyard "
                  f"{b['dockyard']['median']:.2f}/s (rounds {b['dockyard']['min']:.2f}–"
                  f"{b['dockyard']['max']:.2f}), raw {b['raw']['median']:.2f}/s (rounds "
                  f"{b['raw']['min']:.2f}–{b['raw']['max']:.2f}), **ratio of the medians "
                  f"{b['ratio']:.2f}** (goal ≥ 0.90 on the median of at least "
                  f"{BURST_MIN_ROUNDS} rounds: {burst_verdict(b)})."
                  + (" Per round (Dockyard / raw of the same round): "
                     + ", ".join(f"{x:.2f}" for x in rr)
                     + f"; spread {min(rr):.2f}–{max(rr):.2f}." if rr else "")]
        cpu = b.get("cpu_per_launch")
        if cpu:
            lines += ["", "CPU per launch (user + system from /proc of the `dockyard up` "
                      "children, from the first request until the last instance answered "
                      f"ping, ÷ {b['n']}; median of the Dockyard rounds): "
                      + ", ".join(f"{role} {c['median'] * 1000:.0f} ms (rounds "
                                  f"{c['min'] * 1000:.0f}–{c['max'] * 1000:.0f})"
                                  for role, c in cpu.items()) + "."]
    if n:
        pinned = ("server pinned to CPU 0 and client to CPU 1 (`taskset`) on every side"
                  if n.get("pinned") else "unpinned")
        lines += [
            "", "## Network", "",
            f"iperf3 TCP, one stream, {n['seconds']} s per run, {n['runs']} runs per side, "
            "order rotated and alternated. Every side is measured the same way: server and "
            "client each run in their netns through `nsenter --net=FILE` (an instance's "
            f"`/proc/PID/ns/net`, or a `/run/netns` file), {pinned}, same iperf3 options. "
            "Dockyard: two instances on the default bridge. Floor: a bare veth pair between "
            "two namespaces with the kernel's default settings. Received bit rate.", "",
            "| | runs Gbit/s | median Gbit/s |", "|---|---|---|",
        ]
        for key, label in NET_SIDES.items():
            if f"{key}_runs" in n:
                runs_ = ", ".join(f"{x:.2f}" for x in n[f"{key}_runs"])
                median = n["dockyard" if key == "dy" else key]["median"]
                lines.append(f"| {label} | {runs_} | {median:.2f} |")
        if n.get("like_for_like"):
            lines += ["", f"**Ratio {n['ratio']:.3f}, like for like** (Dockyard / a bare veth "
                      f"pair given the same IPv4 GSO/GRO size {n.get('gso_size')} as "
                      f"Dockyard's veths; goal ≥ 0.95: {verdict('network', n['ratio'])}). "
                      f"Against the floor with the kernel's default veths (not like for like: "
                      f"only Dockyard's side has BIG TCP): {n['ratio_default_floor']:.2f}. "
                      f"Dockyard / plain bridge: "
                      f"{n['dockyard']['median'] / n['bridge']['median']:.2f}; plain bridge / "
                      f"default veth floor: {n['bridge']['median'] / n['floor']['median']:.2f}."]
        else:
            lines += ["", f"**Ratio {n['ratio']:.2f}** against the default-veth floor (a row "
                      "from before the like-for-like verdict)."]
    if results.get("collector"):
        lines += report_lines(results["collector"])
    if results.get("console"):
        lines += console_lines(results["console"])
    if results.get("placement"):
        lines += placement_lines(results["placement"])
    if results.get("scheduler"):
        lines += scheduler_lines(results["scheduler"])
    if results.get("migrate"):
        lines += migrate_lines(results["migrate"])
    if results.get("live"):
        lines += live_lines(results["live"])
    if results.get("push"):
        lines += push_lines(results["push"])
    if results.get("stacks"):
        lines += stacks_lines(results["stacks"])
    if results.get("cli"):
        lines += ["", "`bench/cli_startup.py`:", "",
                  str(results["cli"].get("markdown", "")).strip()]
    for key, err in failed.items():
        lines += ["", f"**{key} benchmark failed (this run fails):** `{err}`"]
    scale = BENCH / "SCALE.md"  # bench/hollow.py's runs (bench/scale_report.py writes it)
    if scale.exists():
        lines += ["", scale.read_text().strip()]
    notes = BENCH / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def previous_results(path: Path, only: set[str]) -> dict[str, Any]:
    """Results of the benchmarks not run this time, from the last report (if any), each with
    the commit and time it was measured at (a result saved before rows were dated gets the
    saved report's time and an unknown commit)."""
    try:
        data = json.loads(path.read_text())
        saved = data["results"]
    except (OSError, ValueError, KeyError):
        return {}
    carried = {}
    for key, value in saved.items():
        if key in only or not isinstance(value, dict):
            continue
        value.setdefault("measured", {"commit": "? (undated)", "at": data.get("generated", "?")})
        carried[key] = value
    return carried


def git_commit() -> str:
    """HEAD's short hash, with "+dirty" when the tree differs from it (bench/RESULTS.* aside)."""
    head = run(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
               check=False).strip() or "?"
    dirty = run(["git", "-C", str(BENCH.parent), "status", "--porcelain", "--",
                 ".", ":!bench/RESULTS.md", ":!bench/RESULTS.json"], check=False).strip()
    return head + ("+dirty" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer, shorter runs")
    ap.add_argument("--only", default=",".join(ALL),
                    help="comma-separated benchmarks (default: all of them, one run)")
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--runs", type=int, default=None, metavar="N",
                    help=f"rounds per side (burst; default and minimum for a verdict "
                         f"{BURST_MIN_ROUNDS}), migrations per image (migrate) and rounds "
                         "(live; default 3); 1 with --quick")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only re-render the report from a saved RESULTS.json (no benchmark)")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        text = report(saved["results"], saved["facts"], saved["quick"], saved["took"],
                      saved.get("failed", {}), saved["generated"],
                      set(saved["this_run"]) if "this_run" in saved else None)
        Path(args.out).write_text(text)
        return 0
    only = set(args.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    commit = git_commit()
    runs = args.runs or (1 if args.quick else 3)
    sigterm_as_interrupt()
    started = time.monotonic()
    facts = machine_facts()
    log(f"machine: {facts}")
    tag = bench_tag()
    dy_octet, raw_octet, veth_octet = pick_octets(3)
    dy = PrivateDockyard(dy_octet)
    raw = RawNet(raw_octet, tag)
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    # the scheduler benchmark is pure Python; migrate and live bring their own dev-cluster
    needs_docker = bool(only & {"create", "burst", "network", "collector"})
    try:
        if needs_docker:
            log(f"starting private Dockyard on {dy.url}, subnet {dy.subnet}")
            dy.start()
            raw.setup()
        benches = {  # a stopped run still reports the ones done: the quick ones first
            "scheduler": lambda: bench_scheduler(args.quick, log),
            "placement": lambda: bench_placement_path(args.quick, log),
            "console": lambda: bench_console(args.quick, log),
            "network": lambda: bench_network(dy, veth_octet, tag, 2 if args.quick else 5,
                                             1 if args.quick else 5),
            "burst": lambda: bench_burst(dy, raw, 10 if args.quick else 50,
                                         args.runs or (1 if args.quick else BURST_MIN_ROUNDS)),
            "collector": lambda: bench_collector(dy, [10, 30] if args.quick else [10, 100, 300],
                                                 10.0 if args.quick else 30.0, log),
            "create": lambda: bench_create(dy, raw, 5 if args.quick else 20),
            "migrate": lambda: bench_migrate(runs, log),
            "live": lambda: bench_live(runs, log),
            "cli": lambda: bench_cli(runs=5 if args.quick else 20),
            "push": lambda: bench_push_deploy(1 if args.quick else 5, log),
            "stacks": lambda: bench_stacks(1 if args.quick else 2, 1 if args.quick else 2,
                                           log),
        }
        for key, fn in benches.items():
            if key in only:
                try:
                    results[key] = fn()
                    results[key]["measured"] = {
                        "commit": commit,
                        "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
                except Exception as exc:  # report the others anyway
                    log(f"{key} failed: {exc!r}")
                    failed[key] = repr(exc)
    except KeyboardInterrupt:  # clean up, then report what finished (the rest is carried)
        log("interrupted; cleaning up")
        failed["interrupted"] = ("the run was stopped before every benchmark ran: "
                                 f"not measured in it: {', '.join(sorted(only - set(results)))}")
    finally:
        if needs_docker:
            log("cleaning up")
            raw.teardown()
        dy.stop()  # unstarted: removes its temporary directory only
    took = time.monotonic() - started
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    this_run = set(results)
    results = {**previous_results(Path(args.out).with_suffix(".json"), only), **results}
    text = report(results, facts, args.quick, took, failed, now, this_run)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(
        {"facts": facts, "quick": args.quick, "took": took, "generated": now, "failed": failed,
         "commit": commit, "this_run": sorted(this_run), "results": results}, indent=1,
        default=str))
    log(f"wrote {args.out}")
    print(text)
    return 130 if "interrupted" in failed else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
