"""Cold migration downtime, by ping, for the busybox and the machine image.

A `dockyard dev-cluster up --hosts 3` of its own. The machine image (`dockyard image build
machine` on the main engine if it is missing there) goes into the cluster registry with
`dockyard image import` of a `docker save` archive (the dev-cluster hosts have private
engines, so there is no host whose engine `image push` could push it from). For each image,
`mover` (with a named volume) goes host1 → host2 → host1 …, `runs` times; an instance on host3
pings mover's IP every 50 ms (iputils `ping -D -i 0.05`, run in the pinger's netns from the
host). Downtime = the largest silence between consecutive answers during the `migrate` call:
last answer before → first answer after. The server's own measure (stop → running on the
target) is reported beside it."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import gap_during

ROOT = Path(__file__).resolve().parents[1]
DOCKYARD = str(ROOT / ".venv" / "bin" / "dockyard")
GOAL_S = 5.0
MACHINE = "dockyard/machine:bookworm"
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")
IMAGES = (("busybox", "dockyard/busybox", []),
          ("machine", MACHINE, ["--memory", "256M"]))


class Cluster:
    """A private dev-cluster for one benchmark (its own home and CLI config), driven by the
    CLI; `down()` removes it. Shared by the cold and live migration benchmarks."""

    def __init__(self, prefix: str = "migrate", timeout: float = 1800) -> None:
        self.timeout = timeout
        self.base = Path(tempfile.mkdtemp(prefix=f"dockyard-bench-{prefix}-"))
        self.home = self.base / "home"
        self.env = {**os.environ, "DOCKYARD_CONFIG": str(self.base / "config.json")}
        self.env.pop("DOCKYARD_URL", None)
        self.env.pop("DOCKYARD_TOKEN", None)

    def cli(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([DOCKYARD, *args], capture_output=True, text=True,
                              env=self.env, timeout=self.timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"dockyard {' '.join(args)}: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def container_pid(self, host: str, instance_id: str) -> int:
        st = json.loads((self.home / "dev-cluster.json").read_text())
        root = next(h["root"] for h in st["hosts"] if h["name"] == host)
        out = subprocess.run(["docker", "-H", f"unix://{root}/docker/docker.sock", "inspect",
                              "-f", "{{.State.Pid}}", f"dy-{instance_id}"],
                             capture_output=True, text=True, check=True, timeout=60)
        return int(out.stdout.strip())

    def down(self) -> None:
        self.cli("dev-cluster", "down", "--home", str(self.home), check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def machine_into(cl: Cluster, log: Callable[[str], None]) -> None:
    have = subprocess.run(["docker", "image", "inspect", MACHINE], capture_output=True)
    if have.returncode != 0:
        log(f"  building {MACHINE} on the main engine (once)")
        subprocess.run([DOCKYARD, "image", "build", "machine"], check=True, timeout=3600)
    archive = cl.base / "machine.tar"
    subprocess.run(["docker", "save", "-o", str(archive), MACHINE], check=True, timeout=600)
    log(f"  importing {MACHINE} into the cluster registry")
    cl.cli("image", "import", str(archive), MACHINE, "--host", "host1")
    archive.unlink()


def answers(lines: list[str]) -> list[float]:
    return [float(m.group(1)) for line in lines if (m := REPLY.match(line))]


def _one_image(cl: Cluster, key: str, image: str, extra: list[str], runs: int,
               log: Callable[[str], None]) -> dict[str, Any]:
    name = f"mv-{key}"
    cl.cli("launch", image, name, "--host", "host1", "--network", "benchmig", "--no-lxcfs",
           "-v", f"{name}data:/data", *extra)
    cl.cli("exec", name, "--", "sh", "-c", "echo data > /data/marker")
    mover = json.loads(cl.cli("show", name, "--json"))
    pinger = json.loads(cl.cli("show", "pinger", "--json"))
    pid = cl.container_pid("host3", pinger["id"])
    out_path = cl.base / f"ping-{key}.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "ping", "-D", "-n",
                                 "-i", "0.05", mover["ip"]], stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(2.0)
            done: list[dict[str, Any]] = []
            for r in range(runs):
                target = "host2" if r % 2 == 0 else "host1"
                t0 = time.time()
                reply = json.loads(cl.cli("migrate", name, "--to", target, "--json"))
                t1 = time.time()
                time.sleep(2.0)
                done.append({"run": r + 1, "target": target, "start": t0, "end": t1,
                             "server_downtime": float(reply["downtime"]), "took": t1 - t0})
                log(f"  {key} -> {target}: server downtime {reply['downtime']:.3f} s, "
                    f"call {t1 - t0:.2f} s")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    times = answers(out_path.read_text().splitlines())
    for run in done:
        run["ping_downtime"] = gap_during(times, run["start"], run["end"])
    assert cl.cli("exec", name, "--", "cat", "/data/marker").strip() == "data"
    cl.cli("delete", name, "--force")
    pings = [x["ping_downtime"] for x in done]
    return {"image": image, "runs": done, "answers": len(times),
            "median": statistics.median(pings), "max": max(pings),
            "server_median": statistics.median(x["server_downtime"] for x in done)}


def bench_migrate(runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    cl = Cluster()
    try:
        log("cold migration: dev-cluster up (3 hosts)")
        cl.cli("dev-cluster", "up", "--hosts", "3", "--home", str(cl.home),
               "--heartbeat-timeout", "6", "--resync-interval", "30")
        cl.cli("network", "create", "benchmig", "--subnet", "10.241.70.0/24")
        cl.cli("launch", "dockyard/busybox", "pinger", "--host", "host3", "--network",
               "benchmig", "--no-lxcfs")
        machine_into(cl, log)
        result: dict[str, Any] = {"runs": runs, "goal": GOAL_S}
        for key, image, extra in IMAGES:
            result[key] = _one_image(cl, key, image, extra, runs, log)
        result["ok"] = all(result[k]["max"] <= GOAL_S for k, _, _ in IMAGES)
        return result
    finally:
        cl.down()


def summary_row(r: dict[str, Any]) -> str:
    return (f"| cold migration downtime (ping, 50 ms) | busybox {r['busybox']['median']:.2f} s, "
            f"machine {r['machine']['median']:.2f} s | - | - | ≤ {GOAL_S:.0f} s | "
            f"{'PASS' if r['ok'] else 'FAIL'} |")


def report_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        "", "## Cold migration", "",
        "`bench/migrate.py` (`--only migrate`): a `dev-cluster up --hosts 3` of its own. An "
        "instance with a named volume goes host1 → host2 → host1 … with `dockyard migrate "
        f"--to`, {r['runs']} run(s) per image: busybox, and `{MACHINE}` (imported into the "
        "cluster registry from the main engine). A busybox instance on host3 pings it every "
        "50 ms (iputils `ping -D -i 0.05` in its netns); downtime = last answer before → first "
        "answer after. Server = stop on the source → running on the target, as the server "
        "records it (the `migrated` event).", "",
        "| image | run | to | ping downtime | server downtime | whole call |",
        "|---|---|---|---|---|---|",
    ]
    for key, _, _ in IMAGES:
        for run in r[key]["runs"]:
            lines.append(f"| {key} | {run['run']} | {run['target']} | "
                         f"{run['ping_downtime']:.3f} s | {run['server_downtime']:.3f} s | "
                         f"{run['took']:.2f} s |")
    lines += ["", f"**Median ping downtime: busybox {r['busybox']['median']:.2f} s (max "
              f"{r['busybox']['max']:.2f}), machine {r['machine']['median']:.2f} s (max "
              f"{r['machine']['max']:.2f})** (goal ≤ {GOAL_S:.0f} s, every run: "
              f"{'PASS' if r['ok'] else 'FAIL'})."]
    return lines
