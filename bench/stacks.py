"""App stacks (issue #12): a 10-service × 3-replica stack deployed until every replica is
healthy, and a rolling update of 10 replicas behind the HTTP entrance, each against a
baseline in the same run (its own private `dockyard up --entrance`), rounds alternated.

Deploy: `dockyard stack deploy` of 10 services × 3 replicas of `dockyard/busybox` (an
entrypoint that touches /tmp/started, then sleeps; healthcheck `test -f /tmp/started` every
1 s; limits 0.25 CPU and 64 MiB), from the command's start until `GET
/v1/stacks/NAME/replicas` shows all 30 running and healthy, against the same 30 instances
launched one by one through the API (`POST /v1/instances?wait=true` with the very instance
body the stack gives each replica — image, entrypoint, command, limits, healthcheck — made by
Dockyard's own compose loader and `stacks.replicas.instance_spec`, only the name differs),
each waited for until dockerd says it is healthy before the next is launched (dockerd's
first check comes one interval after the start: one by one, that second is paid 30 times;
the stack starts its replicas together). Both sides start from an empty cluster; the stack
is removed and the instances deleted between rounds (not timed).

Rolling update: a service of 10 replicas (busybox `httpd` answering its VERSION, healthcheck
`wget` of its own page every 1 s, `x-dockyard: {http: ...}`) published through the entrance
(HAProxy) while one client sends `GET /` through it every 20 ms (a new connection each time,
timeout 5 s): from the `stack deploy` of the next version until the entrance answers only
the new version (the first answer after the last old one; the client keeps going until the
command returned and 10 new answers came in a row), the command's own time (it returns once
the rollout has finished: every replica new and healthy), and the failed requests (an error,
a status other than 200, or a body that is neither version). The update is stop-first
(Compose's default): each replica is drained from the entrance before it stops. There is no
by-hand equivalent through the entrance (it routes only stack services), so the baseline is
the same update all at once (`parallelism: 10`): what the batches of 2 cost in time and what
they save in failed requests (all at once, no replica serves between the old ones' stop and
the new ones' health: failures are expected there, on purpose).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from common import DOCKYARD, PrivateDockyard, free_port, pick_octets, stats
from push_deploy import kill_entrance

from dockyard.compose.loader import ComposeFile, load_stack
from dockyard.stacks.replicas import instance_spec

SERVICES, REPLICAS = 10, 3
ROLL_REPLICAS, EVERY = 10, 0.02
HOST = "roll.example"
IMAGE = "dockyard/busybox:latest"
SLEEPER = f"""
    image: {IMAGE}
    entrypoint: [/bin/sh, -c]
    command: ["touch /tmp/started; trap 'exit 0' TERM; while :; do sleep 1 & wait $$!; done"]
    healthcheck: {{test: 'test -f /tmp/started', interval: 1s, timeout: 1s, retries: 3}}
    deploy:
      replicas: {REPLICAS}
      resources: {{limits: {{cpus: '0.25', memory: 64M}}}}
"""
WEB = """
services:
  web:
    image: {image}
    entrypoint: [/bin/sh, -c]
    command:
      - mkdir -p /www && echo "$$VERSION" > /www/index.html; trap 'exit 0' TERM;
        httpd -f -p 8080 -h /www & wait
    environment: {{VERSION: {version}}}
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/
      interval: 1s
      timeout: 1s
      retries: 3
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: {parallelism}}}
    x-dockyard:
      http: {{host: {host}, port: 8080}}
"""


def deploy_compose() -> str:
    return "services:\n" + "".join(f"  s{i}:{SLEEPER}" for i in range(1, SERVICES + 1))


class Bench:
    """The private Dockyard (entrance on) and its CLI."""

    def __init__(self, dy: PrivateDockyard, entrance: int, work: Path) -> None:
        self.dy, self.entrance, self.work = dy, entrance, work

    def cli(self, *args: str, timeout: float = 300) -> str:
        env = {**os.environ, "HOME": str(self.dy.dir)}
        env.pop("DOCKYARD_HOME", None)
        done = subprocess.run([str(DOCKYARD), *args], env=env, text=True, capture_output=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"dockyard {' '.join(args)} → {done.returncode}: "
                               f"{done.stderr.strip()[-2000:]}")
        return done.stdout

    def write(self, name: str, text: str) -> Path:
        path = self.work / name
        path.write_text(text)
        return path

    def replicas(self, stack: str) -> list[dict[str, Any]]:
        return list(self.dy.get(f"/v1/stacks/{stack}/replicas")["items"])

    def remove(self, stack: str) -> None:
        self.cli("stack", "rm", stack)


def _healthy(reps: list[dict[str, Any]], want: int) -> bool:
    return len(reps) == want and all(r["state"] == "running" and r["health"] == "healthy"
                                     for r in reps)


def stack_round(b: Bench, i: int) -> dict[str, float]:
    """`dockyard stack deploy` of the 10 × 3 stack until all 30 are healthy."""
    stack = f"dep{i}"
    compose = b.write(f"{stack}.yaml", deploy_compose())
    env = {**os.environ, "HOME": str(b.dy.dir)}
    env.pop("DOCKYARD_HOME", None)
    err = b.work / f"{stack}.err"
    t0 = time.monotonic()
    with err.open("w") as errors:
        cmd = subprocess.Popen([str(DOCKYARD), "stack", "deploy", stack, "-f", str(compose)],
                               env=env, stdout=subprocess.DEVNULL, stderr=errors)
    returned = healthy = 0.0
    deadline = t0 + 180
    try:
        while not healthy:
            if not returned and cmd.poll() is not None:
                returned = time.monotonic()
                if cmd.returncode != 0:
                    raise RuntimeError(f"stack deploy {stack}: {err.read_text()[-2000:]}")
            try:
                reps = b.replicas(stack)
            except httpx.HTTPStatusError:
                reps = []  # not stored yet
            if _healthy(reps, SERVICES * REPLICAS):
                healthy = time.monotonic()
            elif time.monotonic() > deadline:
                raise RuntimeError(f"{stack}: not all healthy after 180 s: "
                                   f"{[(r['name'], r['state'], r['health']) for r in reps]}")
            else:
                time.sleep(0.05)
        if cmd.wait(timeout=120) != 0:
            raise RuntimeError(f"stack deploy {stack}: {err.read_text()[-2000:]}")
        returned = returned or time.monotonic()
    finally:
        if cmd.poll() is None:
            cmd.kill()
            cmd.wait()
    b.remove(stack)
    return {"total": healthy - t0, "command": returned - t0}


def hand_bodies(i: int) -> list[dict[str, Any]]:
    """The stack's replica instance bodies, as the API takes them, named hand{i}-sN-K."""
    spec = load_stack([ComposeFile("compose.yaml", deploy_compose())], name=f"hand{i}",
                      environ={}).spec
    bodies = []
    for service in spec.services:
        for slot in range(1, REPLICAS + 1):
            body = instance_spec(spec, service, slot).model_dump(mode="json",
                                                                 exclude_defaults=True)
            bodies.append(body)
    return bodies


def hand_round(b: Bench, i: int) -> dict[str, float]:
    """The same 30 instances launched one by one, each waited for until healthy."""
    client = b.dy._client()
    launch = health = 0.0
    names = []
    t0 = time.monotonic()
    try:
        for body in hand_bodies(i):
            t1 = time.monotonic()
            r = client.post("/v1/instances", params={"wait": "true"}, json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"launch {body['name']}: {r.status_code} {r.text}")
            names.append(body["name"])
            t2 = time.monotonic()
            _until_healthy(b, body["name"])
            launch += t2 - t1
            health += time.monotonic() - t2
        total = time.monotonic() - t0
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(b.dy.delete, names))
    return {"total": total, "launch": launch, "health": health}


def _until_healthy(b: Bench, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        inst = b.dy.get(f"/v1/instances/{name}")
        if inst["state"] == "running" and inst["health"] == "healthy":
            return
        if inst["state"] in ("error", "stopped") or time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {inst['state']} health {inst['health']}")
        time.sleep(0.05)


class Client(threading.Thread):
    """GET / through the entrance every EVERY seconds (a new connection each); each answer
    kept as (monotonic time it came, what: the body or `ERROR ...`)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.answers: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0),
                          headers={"Host": HOST}) as http:
            tick = time.monotonic()
            while not self.stop.is_set():
                try:
                    reply = http.get(f"http://127.0.0.1:{self.port}/")
                    what = (reply.text.strip() if reply.status_code == 200
                            else f"ERROR {reply.status_code}")
                except httpx.HTTPError as exc:
                    what = f"ERROR {exc!r}"
                self.answers.append((time.monotonic(), what))
                tick = max(tick + EVERY, time.monotonic() - EVERY)
                time.sleep(max(0.0, tick - time.monotonic()))

    def streak(self, version: str) -> int:
        n = 0
        for _, what in reversed(self.answers):
            if what != version:
                break
            n += 1
        return n


def roll_to(b: Bench, version: str, parallelism: int, old: str) -> dict[str, Any]:
    """Deploy `version` (from `old`) with `parallelism` while the client runs."""
    compose = b.write(f"web-{version}.yaml", WEB.format(
        image=IMAGE, version=version, replicas=ROLL_REPLICAS, parallelism=parallelism,
        host=HOST))
    client = Client(b.entrance)
    client.start()
    try:
        _until(lambda: client.streak(old) >= 10, f"the entrance does not serve {old}")
        t0 = time.monotonic()
        b.cli("stack", "deploy", "web", "-f", str(compose))
        returned = time.monotonic()
        _until(lambda: client.streak(version) >= 10, f"the entrance does not serve {version}")
    finally:
        client.stop.set()
        client.join(timeout=10)
    during = [(t, w) for t, w in client.answers if t >= t0]
    last_old = max((t for t, w in during if w == old), default=t0)
    only_new = min(t for t, w in during if t > last_old and w == version)
    failed = [(t - t0, w) for t, w in during if w not in (old, version)]
    reps = b.replicas("web")
    if not _healthy(reps, ROLL_REPLICAS):
        raise RuntimeError(f"web after {version}: {reps}")
    return {"total": only_new - t0, "command": returned - t0, "requests": len(during),
            "failed": len(failed), "failures": failed[:10],
            "kinds": dict(Counter(w for _, w in failed))}


def _until(ok: Callable[[], bool], message: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)


def bench_stacks(deploy_rounds: int, roll_rounds: int,
                 log: Callable[[str], None]) -> dict[str, Any]:
    entrance = free_port()
    dy = PrivateDockyard(pick_octets(1)[0], ["--entrance", f"127.0.0.1:{entrance}"])
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-stacks-"))
    b = Bench(dy, entrance, work)
    deploy: dict[str, list[dict[str, float]]] = {"dy": [], "hand": []}
    roll: dict[str, list[dict[str, Any]]] = {"p2": [], "p10": []}
    try:
        dy.start()
        for i in range(1, deploy_rounds + 1):
            for side in ("dy", "hand") if i % 2 else ("hand", "dy"):
                deploy[side].append(stack_round(b, i) if side == "dy" else hand_round(b, i))
                log(f"stacks deploy round {i} {side}: {deploy[side][-1]['total']:.2f} s")
        log("stacks rolling update: first deploy (v0)")
        b.cli("stack", "deploy", "web", "-f", str(b.write("web-v0.yaml", WEB.format(
            image=IMAGE, version="v0", replicas=ROLL_REPLICAS, parallelism=2, host=HOST))))
        old, n = "v0", 0
        for i in range(1, roll_rounds + 1):
            for side in ("p2", "p10") if i % 2 else ("p10", "p2"):
                n += 1
                version = f"v{n}"
                roll[side].append(roll_to(b, version, 2 if side == "p2" else 10, old))
                old = version
                r = roll[side][-1]
                log(f"stacks rolling update round {i} {side}: {r['total']:.2f} s, "
                    f"{r['failed']} of {r['requests']} requests failed")
        b.remove("web")
    finally:
        dy.stop()  # the agent leaves HAProxy running (by design)
        kill_entrance(dy.dir / "home" / "agent")
        shutil.rmtree(work, ignore_errors=True)
    dy_total = statistics.median(s["total"] for s in deploy["dy"])
    hand_total = statistics.median(s["total"] for s in deploy["hand"])
    p2 = statistics.median(s["total"] for s in roll["p2"])
    p10 = statistics.median(s["total"] for s in roll["p10"])
    return {"deploy": {"rounds": deploy_rounds, "dockyard": stats([s["total"] for s in
                                                                    deploy["dy"]]),
                       "hand": stats([s["total"] for s in deploy["hand"]]),
                       "ratio": dy_total / hand_total, "samples": deploy},
            "roll": {"rounds": roll_rounds, "p2": stats([s["total"] for s in roll["p2"]]),
                     "p10": stats([s["total"] for s in roll["p10"]]), "ratio": p2 / p10,
                     "failed_p2": sum(s["failed"] for s in roll["p2"]),
                     "failed_p10": sum(s["failed"] for s in roll["p10"]), "samples": roll}}


def summary_row(r: dict[str, Any]) -> str:
    d, u = r["deploy"], r["roll"]
    return (f"| stack deploy, 10 services × 3 replicas until all healthy (median of "
            f"{d['rounds']}); rolling update of 10 replicas, parallelism 2, behind the "
            f"entrance | deploy {d['dockyard']['median']:.2f} s; update "
            f"{u['p2']['median']:.2f} s, {u['failed_p2']} failed requests | deploy "
            f"{d['hand']['median']:.2f} s (30 `POST /v1/instances` one by one, each until "
            f"healthy); update all at once (parallelism 10) {u['p10']['median']:.2f} s, "
            f"{u['failed_p10']} failed | deploy {d['ratio']:.2f}; update {u['ratio']:.2f} | "
            f"0 failed requests | {'PASS' if u['failed_p2'] == 0 else 'FAIL'} |")


def report_lines(r: dict[str, Any]) -> list[str]:
    d, u = r["deploy"], r["roll"]
    paras = str(__doc__).split("\n\n")
    dy, hand = d["samples"]["dy"], d["samples"]["hand"]

    def med(rows: list[dict[str, Any]], key: str) -> str:
        return f"{statistics.median(s[key] for s in rows):.2f}"

    lines = ["", "## App stacks", ""]
    for para in paras[:3]:
        lines += [para.strip().replace("\n", " "), ""]
    lines += [
        "| deploy (median s) | Dockyard `stack deploy` | by hand, 30 API launches |",
        "|---|---|---|",
        f"| the command returned (`stack deploy` waits until every replica runs) | "
        f"{med(dy, 'command')} | - |",
        f"| launch calls (`POST ?wait=true`, summed) | - | {med(hand, 'launch')} |",
        f"| waits for healthy (summed) | - | {med(hand, 'health')} |",
        f"| **until all 30 healthy** | **{d['dockyard']['median']:.2f}** | "
        f"**{d['hand']['median']:.2f}** |", "",
        f"Ratio Dockyard / by hand {d['ratio']:.2f}. Rounds (s): Dockyard "
        + ", ".join(f"{s['total']:.2f}" for s in dy) + "; by hand "
        + ", ".join(f"{s['total']:.2f}" for s in hand) + ".", "",
        "| rolling update of 10 (median s) | parallelism 2 | all at once (10) |",
        "|---|---|---|",
        f"| the command returned (rollout finished) | {med(u['samples']['p2'], 'command')}"
        f" | {med(u['samples']['p10'], 'command')} |",
        f"| **until the entrance answers only the new version** | "
        f"**{u['p2']['median']:.2f}** | **{u['p10']['median']:.2f}** |",
        f"| failed requests (of all sent, every round) | **{u['failed_p2']}** of "
        f"{sum(s['requests'] for s in u['samples']['p2'])} | {u['failed_p10']} of "
        f"{sum(s['requests'] for s in u['samples']['p10'])} |", "",
        f"Ratio parallelism 2 / all at once {u['ratio']:.2f}. Rounds (s, failed): "
        "parallelism 2 " + ", ".join(f"{s['total']:.2f} ({s['failed']})"
                                     for s in u["samples"]["p2"])
        + "; all at once " + ", ".join(f"{s['total']:.2f} ({s['failed']})"
                                       for s in u["samples"]["p10"]) + "."]
    lines += ["", "What failed (every round): " + "; ".join(
        f"{label}: " + (", ".join(f"{n} × `{w[:80]}`" for w, n in _kinds(u, side).items())
                        or "nothing")
        for side, label in (("p2", "parallelism 2"), ("p10", "all at once")))
        + "."]
    shown = [f"{t:.2f} s {w[:80]}" for s in u["samples"]["p2"] for t, w in s["failures"]]
    if shown:
        lines += ["", "Failed requests with parallelism 2 (s after the deploy started, "
                  "what came): " + "; ".join(f"`{x}`" for x in shown) + "."]
    return lines


def _kinds(u: dict[str, Any], side: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for sample in u["samples"][side]:
        total.update(sample.get("kinds", {}))
    return dict(total)
