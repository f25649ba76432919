"""`make soak` / `python -m tests.soak --minutes N`: kill -9 the agent or the server at random
moments of create, delete, resize and snapshot on a split test cluster (server and agent as
separate processes, tests/integration/split_env.py), restart it, and check that the instance
converged (running, or gone) and that `leaks()` finds nothing. Each round picks either a
random named fault point of the action (dockyard/faults.py, armed through tests/faultrun.py)
or a random delay after the request. At the end it prints which steps were interrupted and
exits non-zero when any round did not converge. Migration needs two hosts: not soaked here.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

from dockyard import faults
from dockyard.errors import DockyardError
from tests.integration.dockyard_env import IMAGE, leaks
from tests.integration.split_env import SplitDockyard, make_split

ACTIONS = ("create", "delete", "resize", "snapshot")
POINTS = {  # the fault points each action passes, by the process that has them
    "create": [p for p in faults.POINTS if ".create." in p or ".report." in p],
    "delete": [p for p in faults.POINTS if ".delete." in p],
    "resize": ["server.action.committed", "agent.report.before", "server.report.before_apply"],
    "snapshot": [],
}


@dataclass
class Round:
    action: str
    victim: str
    step: str  # the fault point, or "after N ms"
    interrupted: bool
    converged: bool
    detail: str = ""


def until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(DockyardError):
            if check():  # type: ignore[operator]
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


def request(env: SplitDockyard, action: str, name: str) -> None:
    """The API call of `action` (the server may die while answering)."""
    with env.api() as api, contextlib.suppress(DockyardError):
        if action == "create":
            api.post("/v1/instances", {"name": name, "image": IMAGE})
        elif action == "delete":
            api.request("DELETE", f"/v1/instances/{name}", params={"force": "true"})
        elif action == "resize":
            api.request("PATCH", f"/v1/instances/{name}",
                        json={"limits": {"memory": f"{random.choice([64, 96, 128])}M"}})
        else:
            api.post(f"/v1/instances/{name}/snapshot", {"tag": f"{name}-snap"})


def restart(env: SplitDockyard, victim: str, fault: str | None = None) -> None:
    if victim == "agent":  # armed, it may die at the point while resyncing, before it is up
        env.stop_agent(signal.SIGKILL)
        env.start_agent(fault=fault, wait=fault is None)
    else:
        env.stop_server(signal.SIGKILL)
        env.start_server(fault=fault)
        env.proc = env.server


def ensure_up(env: SplitDockyard) -> None:
    if env.server is None or env.server.poll() is not None:
        env.start_server()
        env.proc = env.server
    if env.agent is None or env.agent.poll() is not None:
        env.start_agent()


def one_round(env: SplitDockyard, n: int) -> Round:
    action, victim = random.choice(ACTIONS), random.choice(["agent", "server"])
    name = f"soak-{n}"
    if action != "create":
        env.ok("launch", IMAGE, name)
    points = [p for p in POINTS[action] if p.startswith(victim)]
    if points and random.random() < 0.5:
        step = random.choice(points)
        restart(env, victim, fault=step)  # armed: the process SIGKILLs itself at the point
        request(env, action, name)
        proc = env.agent if victim == "agent" else env.server
        assert proc is not None
        with contextlib.suppress(Exception):
            proc.wait(timeout=30)
        interrupted = proc.returncode == -9
        if not interrupted:
            print(f"  {step} not reached in 30 s (exit {proc.returncode})", flush=True)
    else:
        delay = random.uniform(0.0, 1.5)
        step = f"after {int(delay * 1000)} ms"
        caller = threading.Thread(target=request, args=(env, action, name), daemon=True)
        caller.start()
        time.sleep(delay)
        restart(env, victim)
        caller.join(timeout=60)
        interrupted = True
    ensure_up(env)
    return check(env, Round(action, victim, step, interrupted, False), name)


def check(env: SplitDockyard, rnd: Round, name: str) -> Round:
    """Converged: created and resized instances run (or a create rolled back), deleted ones
    are gone; then no leak. The instance is removed for the next round."""
    want = {None} if rnd.action == "delete" else {"running", None} \
        if rnd.action == "create" else {"running"}
    rnd.converged = until(lambda: state(env, name) in want, 90)
    if not rnd.converged:
        rnd.detail = f"state {state(env, name)!r}, wanted {want}"
    env.cli("delete", name, "--force")
    if not until(lambda: state(env, name) is None, 90):
        rnd.converged, rnd.detail = False, rnd.detail or "could not delete afterwards"
    if not until(lambda: leaks(env) == [], 30):
        rnd.converged, rnd.detail = False, f"leaks: {leaks(env)}"
    return rnd


def report(rounds: list[Round]) -> int:
    print(f"\n{len(rounds)} rounds; interrupted steps:")
    for (action, victim, step), count in sorted(Counter(
            (r.action, r.victim, r.step if not r.step.startswith("after") else "random time")
            for r in rounds if r.interrupted).items()):
        print(f"  {action:<8} {victim:<6} {step:<32} x{count}")
    failed = [r for r in rounds if not r.converged]
    for r in failed:
        print(f"NOT CONVERGED: {r.action} / kill {r.victim} {r.step}: {r.detail}")
    print("all rounds converged, no leaks" if not failed else f"{len(failed)} rounds failed")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    random.seed(args.seed)
    env = make_split()
    rounds: list[Round] = []
    try:
        env.start()
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            try:
                rnd = one_round(env, len(rounds))
            except (AssertionError, RuntimeError, DockyardError) as exc:
                rnd = Round("?", "?", "?", False, False, f"round aborted: {exc!s:.300}")
                ensure_up(env)
            rounds.append(rnd)
            print(f"round {len(rounds)}: {rnd.action} kill {rnd.victim} {rnd.step}: "
                  f"{'ok' if rnd.converged else 'FAILED ' + rnd.detail}", flush=True)
    finally:
        env.cleanup()
    return report(rounds)


if __name__ == "__main__":
    raise SystemExit(main())
