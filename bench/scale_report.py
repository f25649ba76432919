"""The "Scale" section of bench/RESULTS.md from `bench/hollow.py`'s results (JSON lines).

    .venv/bin/python bench/scale_report.py bench/scale.jsonl

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


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "scale.jsonl"
    lines_in = source.read_text().splitlines() if source.exists() else []
    results = newest([json.loads(line) for line in lines_in if line])
    lines = [*HEADER, *(row(r) for r in results)]
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
