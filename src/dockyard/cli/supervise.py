"""`dockyard up`'s children (server, agent): started in their own process group (a terminal's
Ctrl-C reaches `up` alone, which stops them in order), restarted with backoff when one dies,
given up on after repeated fast failures, and stopped within a bound.

    running ──exit──▶ policy.exited(now) ──delay──▶ sleep(delay) ──▶ respawn ──▶ running
                                     └──None (LIMIT exits within WINDOW s)──▶ give up: stop all

Instances are never touched: they belong to dockerd, not to these processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import BackendError

RESTART_LIMIT = 5  # exits within RESTART_WINDOW seconds after which `up` gives up
RESTART_WINDOW = 60.0
STOP_BOUND = 5.0  # seconds from Ctrl-C to every child gone


class RestartPolicy:
    """Backoff before a restart: 0.5 s, 1, 2, 4 … (at most `max_delay`), counted over the
    exits of the last `window` seconds; the `limit`-th exit within the window gives up."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW,
                 first_delay: float = 0.5, max_delay: float = 10.0) -> None:
        self.limit, self.window = limit, window
        self.first_delay, self.max_delay = first_delay, max_delay
        self.exits: deque[float] = deque()

    def exited(self, now: float) -> float | None:
        """Seconds to wait before the restart, or None: give up."""
        self.exits.append(now)
        while self.exits and self.exits[0] <= now - self.window:
            self.exits.popleft()
        if len(self.exits) >= self.limit:
            return None
        return float(min(self.max_delay, self.first_delay * 2.0 ** (len(self.exits) - 1)))


@dataclass
class Child:
    """One `python -m dockyard ARGS` child writing to `log`."""
    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockyard", *self.args], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, process_group=0)
        return self.proc

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def supervise(children: list[Child], say: Callable[[str], None],
              restarted: Callable[[Child, str], None], pause: float = 0.5) -> None:
    """Restart dead children for ever; raises BackendError once one gives up."""
    while True:
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            reason = exit_reason(code)
            delay = child.policy.exited(time.monotonic())
            if delay is None:
                raise BackendError(
                    f"the {child.name} exited {child.policy.limit} times within "
                    f"{child.policy.window:.0f} s (last: {reason}); giving up, see {child.log}")
            child.restarts += 1
            say(f"the {child.name} exited ({reason}); restarting it in {delay:.1f} s "
                f"(restart {child.restarts}; see {child.log})")
            time.sleep(delay)
            child.spawn()
            restarted(child, reason)
        time.sleep(pause)


def stop_all(children: list[Child], bound: float = STOP_BOUND) -> None:
    """SIGTERM to each (agent first, then the server), SIGKILL to what is left after
    `bound` seconds."""
    live = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
    for proc in live:
        proc.terminate()
    deadline = time.monotonic() + bound
    for proc in live:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
