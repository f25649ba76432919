"""`make soak` / `python -m tests.soak --minutes N`: kill -9 the agent or the server at random
moments of create, delete, resize and snapshot on a split test cluster (server and agent as
separate processes, tests/integration/split_env.py), restart it, and check that the instance
converged (running, or gone) and that `leaks()` finds nothing. Each round picks either a
random named fault point that the action reaches (dockyard/faults.py, armed through
tests/faultrun.py) or a random delay after the request. At the end it prints, per action and
process, which points fired how often (and flags points picked but never fired) and what was
in progress at each random-time kill; it exits non-zero when a round did not converge or a
picked point never fired. Migration needs two hosts: not soaked here (see NOT_SOAKED).

A named point is armed `gated:` (tests/faultrun.py): the victim restarts armed, settles (its
own resync and re-reports pass the closed gate), then the gate opens and the request goes out.
The agent is up and registered before the request: the server asks the agent whether the
image exists before it commits a create, so a create sent while the agent restarts is
refused (502, agent unreachable) and never reaches an agent point.

Everything it starts is removed at exit, also on Ctrl-C or SIGTERM: its processes (by PID),
containers, bridges, veths, anti-spoofing rules, iptables rules, engine image tags.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard import faults
from dockyard.adapters import antispoof
from dockyard.adapters.iptables import remove_bridge_forwarding, remove_nat
from dockyard.errors import DockyardError
from tests.faultrun import gate_path
from tests.integration.dockyard_env import IMAGE, host_links, leaks
from tests.integration.split_env import SplitDockyard, make_split

ACTIONS = ("create", "delete", "resize", "snapshot")
VICTIMS = ("agent", "server")
# The named fault points each action reaches, by process. Only these are picked: a point the
# action cannot reach (server.action.committed is stop/start/restart, not a resize) would never
# fire. A snapshot is one synchronous call (agent: docker commit + push), with no named point.
POINTS: dict[str, dict[str, list[str]]] = {
    "create": {"agent": ["agent.create.files_written", "agent.create.container_created",
                         "agent.create.started", "agent.create.plumbed", "agent.report.before"],
               "server": ["server.create.committed", "server.report.before_apply"]},
    "delete": {"agent": ["agent.delete.unplumbed", "agent.delete.container_removed",
                         "agent.report.before"],
               "server": ["server.delete.committed", "server.report.before_apply"]},
    "resize": {"agent": ["agent.report.before"], "server": ["server.report.before_apply"]},
    "snapshot": {"agent": [], "server": []},
}
NOT_SOAKED = {  # the other points, and where they are driven instead
    "migrate": ("a migration needs two hosts (two engines: the instance's container name is "
                "per engine and the source copy is kept until the switch); this split env has "
                "one agent on one dockerd. Its points are killed one by one on dev-clusters by "
                "tests/e2e/test_migrate_faults.py (server.migrate.*) and "
                "tests/e2e/live/test_live_migrate.py (server.live.*)"),
    "stop/start": ("not an action of this soak; tests/integration/test_faults.py kills at "
                   "agent.stop.*, agent.start.started and server.action.committed"),
}


def soaked() -> set[str]:
    return {p for by_victim in POINTS.values() for ps in by_victim.values() for p in ps}


def unsoaked() -> set[str]:
    return set(faults.POINTS) - soaked()


assert soaked() <= faults.POINTS, f"unknown fault points {soaked() - faults.POINTS}"
assert all(p.startswith(v) for a in POINTS.values() for v, ps in a.items() for p in ps)
assert {p.split(".")[1] for p in unsoaked()} <= {"migrate", "live", "stop", "start", "action"}, \
    f"points neither soaked nor explained in NOT_SOAKED: {sorted(unsoaked())}"
SETTLE = 3.0  # seconds after an armed restart before the gate opens
FIRE_TIMEOUT = 30.0  # seconds for an armed point to fire once the request went out


@dataclass
class Round:
    action: str
    victim: str
    point: str | None  # the named fault point armed, or None: a kill at a random time
    interrupted: bool
    converged: bool = False
    detail: str = ""
    delay_ms: int = 0
    at_kill: str = ""  # random time: what was in progress when the kill came
    request: str = ""  # how the API call ended


def until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(DockyardError):
            if check():
                return True
        time.sleep(0.2)
    return False


def state(env: SplitDockyard, name: str) -> str | None:
    with env.api() as api:
        try:
            return str(api.get(f"/v1/instances/{name}")["state"])
        except DockyardError as exc:
            if exc.status == 404:
                return None
            raise


def request(env: SplitDockyard, action: str, name: str) -> str:
    """The API call of `action` (the server may die while answering); how it ended."""
    try:
        with env.api() as api:
            if action == "create":
                api.post("/v1/instances", {"name": name, "image": IMAGE})
            elif action == "delete":
                api.request("DELETE", f"/v1/instances/{name}", params={"force": "true"})
            elif action == "resize":
                api.request("PATCH", f"/v1/instances/{name}",
                            json={"limits": {"memory": f"{random.choice([64, 96, 128])}M"}})
            else:
                api.post(f"/v1/instances/{name}/snapshot", {"tag": f"{name}-snap"})
    except DockyardError as exc:
        return f"error {exc.status}: {exc.message}"[:200]
    return "answered"


class Procs:
    """Every server and agent process this soak started, so that all of them end (by PID)."""

    def __init__(self, env: SplitDockyard) -> None:
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []

    def note(self) -> None:
        for proc in (self.env.agent, self.env.server):
            if proc is not None and proc not in self.started:
                self.started.append(proc)

    def end_all(self) -> None:
        self.note()
        for proc in self.started:
            SplitDockyard._end(proc, signal.SIGTERM)  # SIGKILL when it does not end in 60 s
        for pid in _children_of_root(self.env.root):  # spawned, not yet noted (interrupted)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children_of_root(root: Path) -> list[int]:
    """Our own child processes whose command line names this soak's directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and f"{root}/" in cmdline:
            found.append(int(entry.name))
    return found


def restart(env: SplitDockyard, procs: Procs, victim: str, fault: str | None = None,
            sig: int = signal.SIGKILL) -> None:
    """`victim` killed with `sig` and started again (armed with `fault`), up and answering."""
    if victim == "agent":
        env.stop_agent(sig)
        env.start_agent(fault=fault)
    else:
        env.stop_server(sig)
        env.start_server(fault=fault)
        env.proc = env.server
    procs.note()


def ensure_up(env: SplitDockyard, procs: Procs) -> None:
    if env.server is None or env.server.poll() is not None:
        env.start_server()
        env.proc = env.server
    if env.agent is None or env.agent.poll() is not None:
        env.start_agent()
    procs.note()


def fired_since(env: SplitDockyard, offset: int) -> list[str]:
    if not env.marker.exists():
        return []
    with open(env.marker, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode().split()


def marker_size(env: SplitDockyard) -> int:
    return env.marker.stat().st_size if env.marker.exists() else 0


def point_round(env: SplitDockyard, procs: Procs, action: str, victim: str, name: str,
                point: str) -> Round:
    gate = Path(gate_path(str(env.marker)))
    gate.unlink(missing_ok=True)
    restart(env, procs, victim, fault=f"gated:{point}", sig=signal.SIGTERM)
    time.sleep(SETTLE)
    offset = marker_size(env)
    proc = env.agent if victim == "agent" else env.server
    assert proc is not None
    gate.touch()
    try:
        outcome = request(env, action, name)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=FIRE_TIMEOUT)
    finally:
        gate.unlink(missing_ok=True)
    fired = proc.returncode == -signal.SIGKILL and point in fired_since(env, offset)
    rnd = Round(action, victim, point, fired, request=outcome)
    if not fired:
        rnd.detail = (f"{point} not reached in {FIRE_TIMEOUT:.0f} s (exit {proc.returncode}; "
                      f"request: {outcome})")
        print(f"  {rnd.detail}", flush=True)
        restart(env, procs, victim, sig=signal.SIGTERM)  # disarmed for the next rounds
    return rnd


def in_progress(env: SplitDockyard, name: str, caller: threading.Thread) -> str:
    """What a kill at this moment interrupts: the instance's row and the API call."""
    try:
        rows = env.db_query("SELECT state FROM instances WHERE name=?", name)
    except Exception:  # the database may be busy right then
        rows = [("?",)]
    row = f"instance {rows[0][0]}" if rows else "no instance row"
    return f"{row}, {'request in flight' if caller.is_alive() else 'answered'}"


def random_round(env: SplitDockyard, procs: Procs, action: str, victim: str,
                 name: str) -> Round:
    delay = random.uniform(0.0, 1.5)
    outcome: list[str] = []
    caller = threading.Thread(target=lambda: outcome.append(request(env, action, name)),
                              daemon=True)
    caller.start()
    time.sleep(delay)
    at_kill = in_progress(env, name, caller)
    restart(env, procs, victim)
    caller.join(timeout=60)
    return Round(action, victim, None, True, delay_ms=int(delay * 1000), at_kill=at_kill,
                 request=outcome[0] if outcome else "no answer in 60 s")


def one_round(env: SplitDockyard, procs: Procs, n: int, picked: Counter[str]) -> Round:
    """`picked`: how often each (action, point) was armed so far; the least armed points of
    the action and process are drawn from, so a short soak still spreads over all of them."""
    action, victim = random.choice(ACTIONS), random.choice(VICTIMS)
    name = f"soak-{n}"
    if action != "create":
        env.ok("launch", IMAGE, name)
    points = POINTS[action][victim]
    if points and random.random() < 0.5:
        fewest = min(picked[f"{action} {p}"] for p in points)
        point = random.choice([p for p in points if picked[f"{action} {p}"] == fewest])
        picked[f"{action} {point}"] += 1
        rnd = point_round(env, procs, action, victim, name, point)
    else:
        rnd = random_round(env, procs, action, victim, name)
    ensure_up(env, procs)
    return check(env, rnd, name)


def engine_tags(env: SplitDockyard) -> list[str]:
    """Image tags on the engine that name this cluster's registry (a snapshot's commit is
    tagged there until it is pushed; a kill in between leaves the tag)."""
    client = env.docker_client()  # type: ignore[no-untyped-call]
    try:
        return [tag for image in client.images.list() for tag in image.tags
                if tag.startswith(f"{env.registry}/")]
    finally:
        client.close()


def remove_engine_tags(env: SplitDockyard) -> int:
    """Remove the tags `engine_tags` finds; how many there were."""
    try:
        tags = engine_tags(env)
        client = env.docker_client()  # type: ignore[no-untyped-call]
        try:
            for tag in tags:
                client.images.remove(tag)
        finally:
            client.close()
    except Exception as exc:  # best effort: a tag may vanish meanwhile
        print(f"  removing engine tags: {exc}", flush=True)
        return 0
    return len(tags)


def check(env: SplitDockyard, rnd: Round, name: str) -> Round:
    """Converged: created and resized instances run (a create rolls back only when the kill
    came before its commit), deleted ones are gone; then no leak. The instance (and its
    snapshot) is removed for the next round."""
    if rnd.action == "delete":
        want: set[str | None] = {None}
    elif rnd.action == "create" and rnd.point is None:
        want = {"running", None}
    else:
        want = {"running"}
    converged = until(lambda: state(env, name) in want, 90)
    detail = "" if converged else f"state {state(env, name)!r}, wanted {want}"
    if rnd.action == "snapshot":
        with env.api() as api, contextlib.suppress(DockyardError):
            api.request("DELETE", f"/v1/snapshots/{name}-snap")
    env.cli("delete", name, "--force")
    if not until(lambda: state(env, name) is None, 90):
        converged, detail = False, detail or "could not delete afterwards"
    if not until(lambda: leaks(env) == [], 30):
        converged, detail = False, f"leaks: {leaks(env)}"
    rnd.converged = converged
    rnd.detail = detail or rnd.detail
    return rnd


def describe(r: Round) -> str:
    if r.action == "?":
        return "aborted round"
    if r.point is not None:
        return f"{r.action} / kill {r.victim} at {r.point}" + \
            ("" if r.interrupted else " (never fired)")
    return f"{r.action} / kill {r.victim} after {r.delay_ms} ms ({r.at_kill})"


def report(rounds: list[Round], left_tags: int = 0) -> int:
    named = [r for r in rounds if r.point is not None]
    timed = [r for r in rounds if r.point is None and r.action != "?"]
    aborted = [r for r in rounds if r.action == "?"]
    print(f"\n{len(rounds)} rounds: {len(named)} at a named fault point, {len(timed)} at a "
          f"random time, {len(aborted)} aborted")
    picked = Counter((r.action, r.victim, r.point or "") for r in named)
    fired = Counter((r.action, r.victim, r.point or "") for r in named if r.interrupted)
    never = sorted(k for k in picked if not fired[k])
    print("named fault points, by action and process (fired / picked):")
    for action in ACTIONS:
        for victim in VICTIMS:
            for point in POINTS[action][victim]:
                key = (action, victim, point)
                if picked[key]:
                    flag = "   PICKED, NEVER FIRED" if key in never else ""
                    print(f"  {action:<8} {victim:<6} {point:<34} {fired[key]} / {picked[key]}"
                          f"{flag}")
    unpicked = [f"{a}/{v} {p}" for a in ACTIONS for v in VICTIMS for p in POINTS[a][v]
                if not picked[(a, v, p)]]
    if unpicked:
        print(f"  not picked in this run: {', '.join(unpicked)}")
    print("random-time kills, by action and process (what was in progress at the kill):")
    by: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in timed:
        by[(r.action, r.victim)][r.at_kill] += 1
    for (action, victim), steps in sorted(by.items()):
        listed = "; ".join(f"{step} x{n}" for step, n in steps.most_common())
        print(f"  {action:<8} {victim:<6} {sum(steps.values()):>3}: {listed}")
    for what, why in NOT_SOAKED.items():
        print(f"not soaked here: {what}: {why}")
    groups = Counter(p.rsplit(".", 1)[0] + ".*" for p in unsoaked())
    print("  (named points not soaked here: "
          f"{', '.join(f'{g} ({n})' for g, n in sorted(groups.items()))})")
    if left_tags:
        print(f"note: {left_tags} engine image tag(s) of interrupted snapshots were left "
              "(not a leak that leaks() checks; removed at exit)")
    failed = [r for r in rounds if not r.converged]
    for r in failed:
        print(f"NOT CONVERGED: {describe(r)}: {r.detail}")
    for action, victim, point in never:
        print(f"NEVER FIRED: {action} / {victim} {point} (picked {picked[(action, victim, point)]}"
              " times)")
    print("all rounds converged, no leaks" if not failed else f"{len(failed)} rounds failed")
    return 1 if failed or never else 0


def teardown(env: SplitDockyard, procs: Procs) -> None:
    """Remove everything the soak made, whatever state it was left in."""
    ids: set[str] = set(env.seen_instances)
    nets: set[tuple[str, str]] = set()
    with contextlib.suppress(Exception):
        ids |= {r[0] for r in env.db_query("SELECT id FROM instances")}
        ids |= {r[0] for r in env.db_query(
            "SELECT instance_id FROM events WHERE instance_id IS NOT NULL")}
        nets = {(r[0], r[1]) for r in env.db_query("SELECT bridge, subnet FROM networks")}
    procs.end_all()
    env.bridges |= {bridge for bridge, _ in nets}
    with contextlib.suppress(Exception):
        for port in antispoof.ports():
            if port[3:] in ids:
                antispoof.remove(port)
    for bridge, subnet in nets:
        with contextlib.suppress(Exception):
            remove_nat(bridge, subnet)
    remove_engine_tags(env)
    for bridge in env.bridges:
        with contextlib.suppress(Exception):
            remove_bridge_forwarding(bridge)
    try:
        env.cleanup()  # containers (by cluster label), bridges, the directory
    except Exception as exc:
        print(f"cleanup: {exc!r}", flush=True)
    for link in host_links():
        if link.startswith(("dyh", "dyc")) and link[3:] in ids:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    left = [link for link in host_links() if link[3:] in ids or link in env.bridges]
    print(f"cleanup: processes ended ({len(procs.started)} started), containers, bridges "
          f"{sorted(env.bridges)}, veths, rules removed"
          + (f"; STILL THERE: {left}" if left else ""), flush=True)


def _stop(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    random.seed(seed)
    print(f"soak: {args.minutes:g} minutes, --seed {seed}", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    env = make_split()
    procs = Procs(env)
    rounds: list[Round] = []
    picked: Counter[str] = Counter()
    left_tags = 0
    interrupted = False
    try:
        env.start()
        procs.note()
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            try:
                rnd = one_round(env, procs, len(rounds), picked)
            except (AssertionError, RuntimeError, DockyardError) as exc:
                rnd = Round("?", "?", None, False, False, f"round aborted: {exc!s:.300}")
                ensure_up(env, procs)
            left_tags += remove_engine_tags(env)
            rounds.append(rnd)
            print(f"round {len(rounds)}: {describe(rnd)}: "
                  f"{'ok' if rnd.converged else 'FAILED ' + rnd.detail}", flush=True)
    except KeyboardInterrupt as exc:
        interrupted = True
        print(f"\ninterrupted ({exc or 'Ctrl-C'}): cleaning up", flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        teardown(env, procs)
    code = report(rounds, left_tags)
    return 130 if interrupted else code


if __name__ == "__main__":
    raise SystemExit(main())
