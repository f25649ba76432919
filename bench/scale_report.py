"""The "Scale" section of bench/RESULTS.md from `bench/hollow.py`'s results (JSON lines),
`bench/api_load.py`'s (bench/api_load.jsonl) and `bench/feed_cost.py`'s (bench/feed_cost.jsonl).

    .venv/bin/python bench/scale_report.py bench/scale.jsonl

Each goal of issue 16's items 1, 2 and 6 gets a line with the newest measured figure and
PASS or FAIL (or "not measured": no result holds it).

Writes bench/SCALE.md (the newest run of each size and database; `bench/run.py` includes it
when it regenerates RESULTS.md), puts it into RESULTS.md in place of an earlier Scale section
(before the Findings), and draws bench/scale.png (server CPU and watch latency against the
number of hosts) when matplotlib is installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

HEADER = [
    "## Scale (hollow agents)", "",
    "`bench/hollow.py` (`make bench-scale`): N simulated agents in 2 worker processes (asyncio "
    "+ httpx, the real agent protocol, no Docker: each registers, long-polls the watch with its "
    "peer token, posts a heartbeat every 10 s, reports what it is given running or deleted) "
    "against one `dockyard server` (plain HTTP on loopback). Steady state: 20 s after every "
    "host registered, the server's CPU (from /proc) and peak RSS, the agents' request rates. "
    "Burst: launches from 8 client threads (`POST /v1/instances` without `?wait`: placed, "
    "stored and answered = \"placed and acknowledged\", the agent excluded); watch latency = "
    "from the POST's start until the host's watch reply carried the instance; then every "
    "instance deleted (`force`) until every row is gone. The hollow processes share the 2 "
    "cores with the server: what the server gets is what they leave.", "",
    "| hosts | db | server CPU (cores, steady) | RSS MiB | agent requests/s | register all (s) "
    "| launches | launch p99 ms | watch p99 ms | all running (s) | server CPU s / launch | "
    "delete seen p99 ms | db MiB | commit |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def row(r: dict[str, Any]) -> str:
    s, b = r["steady"], r.get("burst", {"launches": "failed: " + r.get("burst_error", "-")})
    rates = s["requests_per_s"]
    return (f"| {r['hosts']:,} | {r['db']} | {s['server_cpu_cores']:.2f} | "
            f"{s['server_rss_mib']:.0f} | {sum(rates.values()):.0f} (watch "
            f"{rates.get('watch', 0):.0f}, heartbeat {rates.get('heartbeat', 0):.0f}) | "
            f"{r['register_s']:.0f} | {b.get('launches', '-')} | {b.get('launch_p99_ms', '-')} | "
            f"{b.get('watch_p99_ms', '-')} | {b.get('converged_s', '-')} | "
            f"{b.get('server_cpu_s_per_launch', '-')} | {b.get('delete_watch_p99_ms', '-')} | "
            f"{r['db_bytes'] / 2**20:.1f} | {r.get('commit', '-')} {r.get('when', '')} |")


def newest(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[tuple[int, str, str], dict[str, Any]] = {}
    for r in results:
        latest[(r["hosts"], r["db"], r.get("label", ""))] = r
    return [latest[k] for k in sorted(latest)]


def plot(results: list[dict[str, Any]], out: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (cpu, watch) = plt.subplots(1, 2, figsize=(10, 4))
    for db in sorted({r["db"] for r in results}):
        mine = sorted((r for r in results if r["db"] == db and not r.get("label")),
                      key=lambda r: r["hosts"])
        hosts = [r["hosts"] for r in mine]
        cpu.plot(hosts, [r["steady"]["server_cpu_cores"] for r in mine], "o-", label=db)
        watch.plot(hosts, [r.get("burst", {}).get("watch_p99_ms", float("nan")) for r in mine],
                   "o-", label=db)
    cpu.set(xlabel="hosts", ylabel="server CPU (cores), steady state", xscale="log")
    watch.set(xlabel="hosts", ylabel="watch latency p99 (ms), launch burst", xscale="log")
    for ax in (cpu, watch):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return True


def _load(path: Path) -> list[dict[str, Any]]:
    lines_in = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines_in if line.strip()]


def _verdict(value: float | None, limit: float, unit: str, what: str) -> str:
    if value is None or value != value:  # None or NaN
        return f"| {what} | ≤ {limit:g} {unit} | not measured | - |"
    return (f"| {what} | ≤ {limit:g} {unit} | {value:g} {unit} | "
            f"{'PASS' if value <= limit else 'FAIL'} |")


def goals(hollow: list[dict[str, Any]], api: list[dict[str, Any]],
          feed: list[dict[str, Any]]) -> list[str]:
    """One line per goal, from the newest result that holds it."""
    out = ["### Goals (issue 16, items 1, 2 and 6): newest figure, PASS/FAIL", "",
           "| goal | limit | measured | verdict |", "|---|---|---|---|"]
    biggest = max(hollow, key=lambda r: r["hosts"], default=None)
    if biggest is not None and biggest["hosts"] >= 10_000:
        out.append(_verdict(biggest["steady"]["server_cpu_cores"], 1.0, "cores",
                            f"1: server CPU, steady, {biggest['hosts']:,} hosts ({biggest['db']})"))
    else:
        out.append("| 1: server CPU, steady, 10,000 hosts | ≤ 1 cores | not measured at "
                   "10,000 (see the per-call figure below) | - |")
    for r in feed[-2:]:
        for kind in ("heartbeat", "watch"):
            per = r[kind]["server_cpu_ms_per_call"]
            out.append(_verdict(per, 1.0, "ms", f"1: server CPU per {kind} ({r['db']}, "
                                f"`feed_cost.py`; 1,000/s at 10k hosts needs ≤ 1 ms)"))
    bursts = [r for r in hollow if "burst" in r]
    if bursts:
        b = max(bursts, key=lambda r: r["hosts"])
        tag = f"{b['hosts']:,} hosts ({b['db']})"
        out.append(_verdict(b["burst"]["watch_p99_ms"], 1000, "ms", f"1: watch p99, {tag}"))
        out.append(_verdict(b["burst"]["launch_p99_ms"], 100, "ms",
                            f"1: launch placed + acknowledged p99, {tag}"))
    else:
        out.append("| 1: watch p99 / launch p99 | 1000 / 100 ms | not measured | - |")
    downs = [r for r in hollow if "down" in r]
    if downs:
        d = max(downs, key=lambda r: r["hosts"])
        out.append(_verdict(d["down"]["detected_s"], d["down"]["goal_s"], "s",
                            f"1: host-down detection (heartbeat timeout + 5 s), "
                            f"{d['hosts']:,} hosts ({d['db']})"))
    else:
        out.append("| 1: host-down detection | heartbeat timeout + 5 s | not measured | - |")
    sizes = [r for r in api if r.get("mode") == "size"]
    if sizes:
        z = sizes[-1]
        tag = f"{z['instances']:,} instances ({z['db']})"
        out.append(_verdict(z["get_one"]["p99_ms"], 20, "ms", f"2: GET one p99, {tag}"))
        out.append(_verdict(z["list_page"]["p99_ms"], 100, "ms", f"2: list page p99, {tag}"))
        out.append(_verdict(z["list_page_project"]["p99_ms"], 100, "ms",
                            f"2: list page by project p99, {tag}"))
        out.append("| 2: list filtered by host / label | ≤ 100 ms | not measured: `GET "
                   "/v1/instances` has no host or label filter | - |")
        worst = max(z["launch"]["p99_ms"], z["delete"]["p99_ms"])
        out.append(_verdict(worst, 100, "ms", f"2: mutating p99 (launch, delete), {tag}"))
        walk = z["walk_all"]
        good = walk["complete"] and walk["ordered"]
        out.append(f"| 2: every page walked | complete, ordered | {walk['instances']:,} in "
                   f"{walk['seconds']} s, complete {walk['complete']}, ordered "
                   f"{walk['ordered']} | {'PASS' if good else 'FAIL'} |")
    else:
        out.append("| 2: API at 100,000 instances | | not measured | - |")
    for h in [r for r in api if r.get("mode") == "hammer"][-2:]:
        tag = (f"{h['clients']:,} clients, {h['seconds']:g} s, rate limit "
               f"{h['rate_limit'] or 'off'} ({h['db']})")
        out.append(f"| 6: no 5xx, {tag} | 0 | {h['five_xx']} of "
                   f"{sum(v for k, v in h['statuses'].items() if k.isdigit()):,} replies | "
                   f"{'PASS' if h['five_xx'] == 0 else 'FAIL'} |")
        grow = h["rss_mib_peak"] - h["rss_mib_before"]
        out.append(_verdict(round(grow, 1), 256, "MiB", f"6: server RSS growth, {tag}"))
        limit = 2 * h["tenant_idle_p50_ms"]
        out.append(_verdict(h["tenant_load_p50_ms"], round(limit, 2), "ms",
                            f"6: other tenant p50 under load (2× idle {h['tenant_idle_p50_ms']} "
                            f"ms), {tag}"))
    return out


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "scale.jsonl"
    results = newest(_load(source))
    api, feed = _load(BENCH / "api_load.jsonl"), _load(BENCH / "feed_cost.jsonl")
    lines = [*HEADER, *(row(r) for r in results), "",
             *goals(results, api, feed)]
    if results and plot(results, BENCH / "scale.png"):
        lines += ["", "![server CPU and watch latency against hosts](scale.png)"]
    notes = BENCH / "SCALE_NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    section = "\n".join(lines) + "\n"
    (BENCH / "SCALE.md").write_text(section)
    results_md = BENCH / "RESULTS.md"
    text = results_md.read_text()
    start = text.find("## Scale (hollow agents)")
    if start >= 0:
        end = text.find("\n## ", start + 3)
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    cut = text.find("## Findings")
    text = (text[:cut] + section + "\n" + text[cut:]) if cut >= 0 else text + "\n" + section
    results_md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
