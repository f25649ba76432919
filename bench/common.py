"""Shared helpers for the Dockyard benchmarks (not tests).

* `PrivateDockyard`: a private `dockyard up` (own HOME, port, subnet) with full clean-up:
  containers labelled with its cluster uuid, its bridges and their DOCKER-USER rules.
* `RawNet`: the baseline — a bridge made by the benchmark, `docker run --network none` and the
  veth plumbing done by a shell script (`raw_plumb.sh`), as an operator would do by hand.
* `ping_until`, `stats`, `run`: small utilities.

Only subprocess, httpx and the standard library are used. Every address is in 10.244.0.0/16
and stays on this machine (our bridges and namespaces).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dockyard.adapters.iptables import remove_bridge_forwarding

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DOCKYARD = ROOT / ".venv" / "bin" / "dockyard"
IMAGE = "dockyard/busybox:latest"
PLUMB = BENCH / "raw_plumb.sh"
BENCH_LABEL = "dockyard.bench"


def emit(result: dict[str, Any], out: Path | None) -> None:
    """A benchmark's result: printed as JSON, and appended to `out` as one JSON line."""
    print(json.dumps(result, indent=1))
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(result) + "\n")


def run(cmd: list[str], check: bool = True, timeout: float = 120, **kw: Any) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} → {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, capture_output=True, timeout=60)


def sigterm_as_interrupt() -> None:
    """Make SIGTERM behave like Ctrl-C so every `finally` clean-up runs."""
    def handler(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def ping_until(ip: str, deadline_s: float = 30.0) -> tuple[float, int]:
    """`ping -c1 -W1 ip` until it answers; returns (monotonic time of the reply, attempts)."""
    end = time.monotonic() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        r = subprocess.run(["ping", "-c1", "-W1", "-n", "-q", ip], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return time.monotonic(), attempts
        if time.monotonic() > end:
            raise RuntimeError(f"{ip} did not answer ping within {deadline_s:.0f}s")
        time.sleep(0.01)


class NoAnswer(RuntimeError):
    """The pinger saw no answer on one side of a move: the downtime is unknown, the run failed."""


def gap_during(answers: list[float], start: float, end: float) -> float:
    """The largest silence between consecutive ping answers that overlaps [start, end] (the
    move). Raises NoAnswer unless an answer came before `start` and another after `end`:
    an instance that never answers again (or a pinger that died) is a failed run, not a
    downtime of 0."""
    if not any(a <= start for a in answers):
        raise NoAnswer(f"no ping answer before the move started ({len(answers)} answers)")
    if not any(b >= end for b in answers):
        raise NoAnswer(f"no ping answer after the move ended ({len(answers)} answers, last "
                       f"{max(answers) - end:+.2f} s from the end)")
    worst = 0.0
    for a, b in zip(answers, answers[1:], strict=False):
        if b >= start and a <= end:
            worst = max(worst, b - a)
    return worst


def stats(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    if not s:
        return {"n": 0, "median": float("nan"), "p90": float("nan"), "min": float("nan"),
                "max": float("nan")}
    p90 = s[min(len(s) - 1, max(0, round(0.9 * len(s) + 0.5) - 1))]
    return {"n": len(s), "median": statistics.median(s), "p90": p90, "min": s[0], "max": s[-1]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def used_subnets() -> set[str]:
    out = run(["ip", "-4", "-o", "addr", "show"], check=False)
    nets = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1]
            nets.add(".".join(addr.split("/")[0].split(".")[:3]))
    return nets


def pick_octets(n: int) -> list[int]:
    """n third octets N such that 10.244.N.0/24 is not in use on this machine."""
    used = used_subnets()
    free = [i for i in range(100, 250) if f"10.244.{i}" not in used]
    random.shuffle(free)
    return free[:n]


def container_pid(container: str) -> int:
    return int(run(["docker", "inspect", "-f", "{{.State.Pid}}", container]).strip())


def machine_facts() -> dict[str, str]:
    return {
        "nproc": run(["nproc"]).strip(),
        "kernel": os.uname().release,
        "docker": run(["docker", "version", "-f", "{{.Server.Version}}"], check=False).strip(),
        "cpu": next((ln.split(":", 1)[1].strip() for ln in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), "?"),
        "memory": run(["free", "-g"], check=False).splitlines()[1].split()[1] + " GiB"
        if shutil.which("free") else "?",
    }


# -- private Dockyard --------------------------------------------------------------------------

class PrivateDockyard:
    """`dockyard up` with its own HOME, port and subnet; `stop()` removes everything it made."""

    def __init__(self, octet: int, up_args: list[str] | None = None) -> None:
        self.octet = octet
        self.up_args = list(up_args or [])  # more `dockyard up` options
        self.subnet = f"10.244.{octet}.0/24"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"  # `up` serves TLS with its cluster CA
        self.ca = ""  # HOME/tls/ca.pem, as the CLI config names it
        self.dir = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.cluster = ""
        self.bridges: list[str] = []
        self._local = threading.local()

    # lifecycle
    def start(self, timeout: float = 90.0) -> None:
        env = {**os.environ, "HOME": str(self.dir)}
        env.pop("DOCKYARD_HOME", None)
        env.pop("DOCKYARD_SUBNET", None)
        with open(self.dir / "up.log", "wb") as log:
            self.proc = subprocess.Popen(
                [str(DOCKYARD), "up", "--home", str(self.dir / "home"), "--listen",
                 f"127.0.0.1:{self.port}", "--subnet", self.subnet, *self.up_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=ROOT, start_new_session=True)
        end = time.monotonic() + timeout
        while "is up" not in (self.dir / "up.log").read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard up exited: {(self.dir / 'up.log').read_text()}")
            if time.monotonic() > end:
                raise RuntimeError("dockyard up did not come up in time")
            time.sleep(0.2)
        cfg = json.loads((self.dir / ".config" / "dockyard" / "config.json").read_text())
        self.token = cfg["token"]
        self.url, self.ca = cfg["url"], cfg.get("ca", "")
        self.cluster = self._cluster_id()
        self.bridges = [n["bridge"] for n in self.get("/v1/networks")["items"]]

    def _cluster_id(self) -> str:
        con = sqlite3.connect(self.dir / "home" / "dockyard.db")
        try:
            row = con.execute("SELECT value FROM meta WHERE key='cluster'").fetchone()
        finally:
            con.close()
        value = row[0]
        with contextlib.suppress(TypeError, ValueError):  # JSON in some schema versions
            value = json.loads(value)
        return str(value)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.cluster:
            ids = run(["docker", "ps", "-aq", "--filter",
                       f"label=dockyard.cluster={self.cluster}"], check=False).split()
            for chunk in range(0, len(ids), 50):
                quiet(["docker", "rm", "-f", *ids[chunk:chunk + 50]])
        for br in self.bridges:
            quiet(["ip", "link", "del", br])
            remove_bridge_forwarding(br)  # the filter ACCEPT and the raw NOTRACK rules
        shutil.rmtree(self.dir, ignore_errors=True)

    # REST
    def _client(self) -> httpx.Client:
        c = getattr(self._local, "client", None)
        if c is None:
            verify = ssl.create_default_context(cafile=self.ca) if self.ca else True
            c = httpx.Client(base_url=self.url, timeout=180, verify=verify,
                             headers={"Authorization": f"Bearer {self.token}"})
            self._local.client = c
        return c

    def get(self, path: str) -> Any:
        r = self._client().get(path)
        r.raise_for_status()
        return r.json()

    def launch(self, name: str) -> dict[str, Any]:
        r = self._client().post("/v1/instances", params={"wait": "true"},
                                json={"name": name, "image": IMAGE})
        if r.status_code >= 300:
            raise RuntimeError(f"launch {name}: {r.status_code} {r.text}")
        return dict(r.json())

    def delete(self, name: str) -> None:
        r = self._client().delete(f"/v1/instances/{name}",
                                  params={"force": "true", "wait": "true"})
        if r.status_code >= 300 and r.status_code != 404:
            raise RuntimeError(f"delete {name}: {r.status_code} {r.text}")


# -- raw docker + shell plumbing ---------------------------------------------------------------

@dataclass
class RawInstance:
    name: str
    container: str
    ip: str
    veth: str
    timings: dict[str, float] = field(default_factory=dict)


class RawNet:
    """A bridge of our own plus `docker run --network none` + `raw_plumb.sh` per instance."""

    def __init__(self, octet: int, tag: str) -> None:
        self.octet = octet
        self.tag = tag
        self.bridge = f"rbr{tag}"[:15]
        self.gateway = f"10.244.{octet}.1"
        self._next = 10
        self._lock = threading.Lock()
        self.instances: dict[str, RawInstance] = {}

    def setup(self) -> None:
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        run(["iptables", "-w", "-I", "DOCKER-USER", "-i", self.bridge, "-o", self.bridge,
             "-j", "ACCEPT"])

    def _alloc(self) -> tuple[int, int]:
        with self._lock:
            n = self._next
            self._next += 1
            if self._next > 250:
                self._next = 10
            return n, len(self.instances)

    def launch(self, name: str) -> RawInstance:
        """docker run + plumbing script; returns when the script has finished."""
        host_n, _ = self._alloc()
        ip = f"10.244.{self.octet}.{host_n}"
        mac = f"02:42:0a:f4:{self.octet:02x}:{host_n:02x}"
        veth = f"rv{self.tag}{host_n:03d}"[:15]
        t0 = time.monotonic()
        cid = run(["docker", "run", "-d", "--network", "none", "--name", name,
                   "--label", f"{BENCH_LABEL}={self.tag}", IMAGE]).strip()
        t1 = time.monotonic()
        inst = RawInstance(name, cid, ip, veth)
        with self._lock:
            self.instances[name] = inst
        run([str(PLUMB), cid, veth, self.bridge, mac, f"{ip}/24", self.gateway])
        inst.timings = {"docker_run": t1 - t0, "plumb": time.monotonic() - t1}
        return inst

    def delete(self, name: str) -> None:
        inst = self.instances.pop(name, None)
        quiet(["docker", "rm", "-f", name])
        if inst is not None:
            quiet(["ip", "link", "del", inst.veth])

    def teardown(self) -> None:
        ids = run(["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}={self.tag}"],
                  check=False).split()
        for chunk in range(0, len(ids), 50):
            quiet(["docker", "rm", "-f", *ids[chunk:chunk + 50]])
        for inst in list(self.instances.values()):
            quiet(["ip", "link", "del", inst.veth])
        self.instances.clear()
        # any veth of ours left behind (e.g. interrupted mid-plumbing)
        for line in run(["ip", "-o", "link", "show"], check=False).splitlines():
            dev = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if dev.startswith(f"rv{self.tag}"):
                quiet(["ip", "link", "del", dev])
        quiet(["ip", "link", "del", self.bridge])
        for _ in range(5):
            r = subprocess.run(["iptables", "-w", "-D", "DOCKER-USER", "-i", self.bridge, "-o",
                                self.bridge, "-j", "ACCEPT"], capture_output=True)
            if r.returncode != 0:
                break


def bench_tag() -> str:
    return f"{os.getpid() % 0xffff:04x}"
