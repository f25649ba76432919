"""`dockyard up`'s supervision: backoff and giving up (real child processes that die), and
stopping on a signal noted by its handler (real signals to the test process)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.supervise import (
    Child,
    RestartPolicy,
    StopRequest,
    exit_reason,
    stop_all,
    supervise,
)
from dockyard.errors import BackendError


def test_backoff_doubles_and_the_fifth_exit_within_the_window_gives_up() -> None:
    policy = RestartPolicy(limit=5, window=60.0, first_delay=0.5, max_delay=10.0)
    assert [policy.exited(t) for t in (0.0, 1.0, 2.0, 3.0)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.exited(4.0) is None


def test_exits_spread_over_more_than_the_window_never_give_up() -> None:
    policy = RestartPolicy(limit=5, window=60.0, first_delay=0.5, max_delay=10.0)
    delays = [policy.exited(t * 20.0) for t in range(20)]  # one exit every 20 s
    assert None not in delays and max(delays) == 2.0  # at most 3 exits in any 60 s


def test_the_delay_is_capped() -> None:
    policy = RestartPolicy(limit=100, window=60.0, first_delay=0.5, max_delay=10.0)
    assert [policy.exited(float(t)) for t in range(7)][-1] == 10.0


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(3) == "exit code 3"


def test_a_child_that_keeps_dying_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    said: list[str] = []
    restarted: list[str] = []
    dying = Child("agent", ["no-such-command"], tmp_path / "agent.log",
                  policy=RestartPolicy(limit=3, window=60.0, first_delay=0.05))
    dying.spawn()
    try:
        with pytest.raises(BackendError, match=r"the agent exited 3 times within 60 s "
                           r"\(last: exit code 2\); giving up"):
            supervise([dying], said.append, lambda c, r: restarted.append(r), pause=0.05)
    finally:
        stop_all([dying])
    assert restarted == ["exit code 2", "exit code 2"]  # two restarts, the third exit gives up
    assert said[0].startswith("the agent exited (exit code 2); restarting it in 0.1 s")
    assert "No such command" in (tmp_path / "agent.log").read_text()


@pytest.fixture
def stop() -> Iterator[StopRequest]:
    """A StopRequest installed for SIGINT/SIGTERM/SIGHUP; the handlers restored after."""
    before = {signum: signal.getsignal(signum) for signum in StopRequest.SIGNALS}
    request = StopRequest()
    request.install()
    try:
        yield request
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_ctrl_c_is_noted_and_supervise_returns_to_stop_the_children(stop: StopRequest) -> None:
    """SIGINT while `up` supervises: no exception, the loop returns, stop_all ends the
    children (SIGTERM) — in the normal flow of `up`, not in the signal handler."""
    child = Child("agent", [], Path("/dev/null"))
    child.proc = subprocess.Popen(["sleep", "60"])
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        supervise([child], print, lambda c, r: None, pause=0.05, stop=stop)
    finally:
        timer.join()
        stop_all([child], bound=5.0)
    assert stop.signum == signal.SIGINT
    assert child.proc.returncode == -signal.SIGTERM


def test_signals_during_polls_leave_every_child_waitable(stop: StopRequest) -> None:
    """What made `up` hang after Ctrl-C (issue 18 item 4): a KeyboardInterrupt raised inside
    `Popen.poll()` right after it took the child's `_waitpid_lock` leaves the lock held, and
    stop_all's `wait()` then blocks for ever. With the StopRequest handler a signal never
    raises: hundreds of them while polling in a tight loop, and the child still stops."""
    proc = subprocess.Popen(["sleep", "60"])
    sent = threading.Event()

    def pester() -> None:
        for _ in range(300):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.001)
        sent.set()

    thread = threading.Thread(target=pester)
    thread.start()
    try:
        polls = 0
        while not sent.is_set():  # KeyboardInterrupt here with Python's default handler
            assert proc.poll() is None
            polls += 1
    finally:
        thread.join()
        stop_all([Child("agent", [], Path("/dev/null"), proc=proc)], bound=5.0)
    assert polls > 1000 and stop.signum == signal.SIGINT
    assert proc.returncode == -signal.SIGTERM


def test_a_requested_stop_cuts_a_restart_backoff_short(stop: StopRequest,
                                                       tmp_path: Path) -> None:
    dying = Child("agent", ["no-such-command"], tmp_path / "agent.log",
                  policy=RestartPolicy(limit=5, window=60.0, first_delay=30.0))
    dying.spawn().wait(timeout=60)  # it has died: supervise starts with the backoff
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        supervise([dying], lambda text: None, lambda c, r: None, pause=0.05, stop=stop)
    finally:
        timer.join()
        stop_all([dying])
    assert stop.signum == signal.SIGTERM and dying.restarts == 1
    assert time.monotonic() - started < 25.0  # not the 30 s backoff: it was cut short
