"""Dockyard benchmarks against raw Docker, in the same run, reported as ratios.

    .venv/bin/python bench/run.py [--quick] [--only create,burst,network,scheduler,live]
                                  [--out FILE] [--runs N]

Benchmarks (they are not tests; they write bench/RESULTS.md):
  create   sequential launches: POST /v1/instances?wait=true until the IP answers ping, vs
           `docker run -d --network none` + raw_plumb.sh until the IP answers ping (alternated)
  burst    N concurrent launches (threads) vs N concurrent docker run + plumbing;
           throughput = instances reachable by ping per second
  network  iperf3 between two Dockyard instances on the default bridge vs a bare veth pair
           between two network namespaces (the floor)
  collector  stats collector CPU per pass and agent RSS at 10, 100, 300 instances
           (bench/collector.py)
  scheduler  scheduler.place on a synthetic 10,000-host snapshot: p50/p99 latency and
           placements per second on one core (bench/scheduler.py; no Docker needed)
  migrate  cold migration downtime by ping (busybox and machine image, 3 runs each) on a
           dev-cluster of its own (bench/migrate.py; only with --only migrate)
  live     live (CRIU) vs cold migration downtime of the same instance, by ping, on a
           dev-cluster --criu of its own (bench/live_migrate.py; only with --only live)
With --only, the other benchmarks' results are carried over from the previous RESULTS.json.
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

from collector import bench_collector, report_lines  # noqa: E402
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
from live_migrate import bench_live  # noqa: E402
from live_migrate import report_lines as live_lines  # noqa: E402
from live_migrate import summary_row as live_row  # noqa: E402
from migrate import bench_migrate  # noqa: E402
from migrate import report_lines as migrate_lines  # noqa: E402
from migrate import summary_row as migrate_row  # noqa: E402
from scheduler import bench_scheduler  # noqa: E402
from scheduler import report_lines as scheduler_lines  # noqa: E402
from scheduler import summary_row as scheduler_row  # noqa: E402

from dockyard.adapters import netlink  # noqa: E402
from dockyard.model import ids  # noqa: E402

GOALS = {"create": ("≤", 1.15), "burst": ("≥", 0.9), "network": ("≥", 0.95)}


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

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, names))
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
            "launch": stats(launch), "last_launch": last_launch}


def bench_burst(dy: PrivateDockyard, raw: RawNet, n: int, rounds: int) -> dict[str, Any]:
    log(f"burst: {n} concurrent launches, {rounds} round(s) each, alternated")
    res: dict[str, list[dict[str, Any]]] = {"dy": [], "raw": []}
    for rnd in range(rounds):
        order = ("dy", "raw") if rnd % 2 == 0 else ("raw", "dy")
        for kind in order:
            r = burst_round(kind, n, dy, raw, rnd)
            res[kind].append(r)
            log(f"  round {rnd + 1} {kind}: {n} reachable in {r['wall']:.2f} s "
                f"= {r['throughput']:.2f}/s (per-instance median {ms(r['per']['median'])} ms)")
    d = stats([r["throughput"] for r in res["dy"]])
    w = stats([r["throughput"] for r in res["raw"]])
    return {"n": n, "rounds": rounds, "dockyard": d, "raw": w, "ratio": d["median"] / w["median"],
            "detail": res}


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
    d, f = stats(res["dy"]), stats(res["floor"])
    return {"seconds": seconds, "runs": runs, "dockyard": d, "floor": f,
            "ratio": d["median"] / f["median"], "dy_runs": res["dy"],
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


def report(results: dict[str, Any], facts: dict[str, str], quick: bool, took: float,
           failed: dict[str, str], now: str) -> str:
    lines = [
        "# Dockyard benchmark results", "",
        f"Generated by `bench/run.py{' --quick' if quick else ''}` on {now} "
        f"(took {took:.0f} s). Benchmarks, not tests: Dockyard and the "
        "raw-Docker baseline run alternately in the same run and are compared as ratios.", "",
        "## Machine", "",
        f"- nproc: {facts['nproc']} ({facts['cpu']}), memory {facts['memory']}",
        f"- kernel: {facts['kernel']}",
        f"- docker: {facts['docker']}", "",
        "## Summary", "",
        "| benchmark | Dockyard (median) | baseline (median) | ratio | goal | result |",
        "|---|---|---|---|---|---|",
    ]
    c, b, n = results.get("create"), results.get("burst"), results.get("network")
    if c:
        lines.append(f"| create latency | {ms(c['dockyard']['median'])} ms | "
                     f"{ms(c['raw']['median'])} ms | {c['ratio']:.2f} | ≤ 1.15 | "
                     f"{verdict('create', c['ratio'])} |")
    if b:
        lines.append(f"| burst throughput ({b['n']}) | {b['dockyard']['median']:.2f}/s | "
                     f"{b['raw']['median']:.2f}/s | {b['ratio']:.2f} | ≥ 0.90 | "
                     f"{verdict('burst', b['ratio'])} |")
    if n:
        lines.append(f"| network throughput | {n['dockyard']['median']:.2f} Gbit/s | "
                     f"{n['floor']['median']:.2f} Gbit/s | {n['ratio']:.2f} | ≥ 0.95 | "
                     f"{verdict('network', n['ratio'])} |")
    col = results.get("collector")
    if results.get("scheduler"):
        lines.append(scheduler_row(results["scheduler"]))
    if results.get("migrate"):
        lines.append(migrate_row(results["migrate"]))
    if results.get("live"):
        lines.append(live_row(results["live"]))
    if col:
        row = next((x for x in col["rows"] if x["instances"] == 100), col["rows"][-1])
        lines.append(f"| collector CPU ({row['instances']} instances, 10 s) | "
                     f"{row['core_percent']:.3f} % of a core | cAdvisor 3–7 % | - | ≤ 1 % | "
                     f"{'PASS' if col['ok'] else 'FAIL'} |")
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
        lines += ["", f"Median throughput: Dockyard {b['dockyard']['median']:.2f}/s, raw "
                  f"{b['raw']['median']:.2f}/s, **ratio {b['ratio']:.2f}** (goal ≥ 0.90: "
                  f"{verdict('burst', b['ratio'])})."]
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
        lines += ["", f"**Ratio {n['ratio']:.2f}** (goal ≥ 0.95: "
                  f"{verdict('network', n['ratio'])}). Dockyard / plain bridge: "
                  f"{n['dockyard']['median'] / n['bridge']['median']:.2f}; plain bridge / veth "
                  f"floor: {n['bridge']['median'] / n['floor']['median']:.2f}."]
        if "floor_big" in n:
            lines[-1] += (f" Like for like (Dockyard / veth pair with the same GSO/GRO size "
                          f"{n.get('gso_size')}): "
                          f"{n['dockyard']['median'] / n['floor_big']['median']:.2f}.")
    if results.get("collector"):
        lines += report_lines(results["collector"])
    if results.get("scheduler"):
        lines += scheduler_lines(results["scheduler"])
    if results.get("migrate"):
        lines += migrate_lines(results["migrate"])
    if results.get("live"):
        lines += live_lines(results["live"])
    for key, err in failed.items():
        lines += ["", f"**{key} benchmark failed:** `{err}`"]
    notes = BENCH / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def previous_results(path: Path, only: set[str]) -> dict[str, Any]:
    """Results of the benchmarks not run this time, from the last report (if any)."""
    try:
        saved = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return {}
    return {k: v for k, v in saved.items() if k not in only}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer, shorter runs")
    ap.add_argument("--only", default="create,burst,network,collector,scheduler")
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--runs", type=int, default=None, metavar="N",
                    help="rounds per side (burst; default 2), migrations per image "
                         "(migrate) and rounds (live; default 3); 1 with --quick")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only re-render the report from a saved RESULTS.json (no benchmark)")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        text = report(saved["results"], saved["facts"], saved["quick"], saved["took"],
                      saved.get("failed", {}), saved["generated"])
        Path(args.out).write_text(text)
        return 0
    only = set(args.only.split(","))
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
    needs_docker = bool(only - {"scheduler", "live", "migrate"})
    try:
        if needs_docker:
            log(f"starting private Dockyard on {dy.url}, subnet {dy.subnet}")
            dy.start()
            raw.setup()
        benches = {
            "create": lambda: bench_create(dy, raw, 5 if args.quick else 20),
            "burst": lambda: bench_burst(dy, raw, 10 if args.quick else 50,
                                         args.runs or (1 if args.quick else 2)),
            "network": lambda: bench_network(dy, veth_octet, tag, 2 if args.quick else 5,
                                             1 if args.quick else 5),
            "collector": lambda: bench_collector(dy, [10, 30] if args.quick else [10, 100, 300],
                                                 10.0 if args.quick else 30.0, log),
            "scheduler": lambda: bench_scheduler(args.quick, log),
            "migrate": lambda: bench_migrate(runs, log),
            "live": lambda: bench_live(runs, log),
        }
        for key, fn in benches.items():
            if key in only:
                try:
                    results[key] = fn()
                except Exception as exc:  # report the others anyway
                    log(f"{key} failed: {exc!r}")
                    failed[key] = repr(exc)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        if needs_docker:
            log("cleaning up")
            raw.teardown()
            dy.stop()
    took = time.monotonic() - started
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = {**previous_results(Path(args.out).with_suffix(".json"), only), **results}
    text = report(results, facts, args.quick, took, failed, now)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(
        {"facts": facts, "quick": args.quick, "took": took, "generated": now, "failed": failed,
         "results": results}, indent=1, default=str))
    log(f"wrote {args.out}")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
