"""`dockyard up`'s children (server, agent): started in their own process group (a terminal's
Ctrl-C reaches `up` alone, which stops them in order), restarted with backoff when one dies,
given up on after repeated fast failures, and stopped within a bound.

    running ──exit──▶ policy.exited(now) ──delay──▶ sleep(delay) ──▶ respawn ──▶ running
                                     └──None (LIMIT exits within WINDOW s)──▶ give up: stop all

Instances are never touched: they belong to dockerd, not to these processes.

Ctrl-C, SIGTERM and SIGHUP are only noted by their handler (`StopRequest`); the supervisor
loop sees the note within `pause` and returns, and `up` stops the children in its normal flow.
Never an exception or a `stop_all` run from inside a signal handler: either lands at any
bytecode, also between `Popen.poll()`'s `_waitpid_lock.acquire()` and its `try`, which leaves
the lock held, and the `wait()` of the stop then blocks for ever on the killed child (issue 18
item 4: `up` did not exit within 60 s of SIGINT).
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


class StopRequest:
    """SIGINT, SIGTERM and SIGHUP, noted by `install()`'s handler and acted on by the code that
    polls `requested` (the handler sets one attribute: nothing else can run in it)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def sleep(self, seconds: float, step: float = 0.1) -> bool:
        """Sleep `seconds`, or less once a stop is requested; whether one was."""
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(step, left))
        return self.requested


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
              restarted: Callable[[Child, str], None], pause: float = 0.5,
              stop: StopRequest | None = None) -> None:
    """Restart dead children until `stop` is requested (then return: the caller stops
    them); raises BackendError once one gives up."""
    stop = stop or StopRequest()
    while not stop.requested:
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
            if stop.sleep(delay):
                return
            child.spawn()
            restarted(child, reason)
        stop.sleep(pause)


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
