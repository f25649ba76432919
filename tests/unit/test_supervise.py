"""`dockyard up`'s supervision: backoff and giving up (real child processes that die)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cli.supervise import Child, RestartPolicy, exit_reason, stop_all, supervise
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
