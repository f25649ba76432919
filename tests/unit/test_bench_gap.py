"""bench/common.gap_during: the migration benchmarks' ping downtime. No answer after (or
before) the move is a failed run, never a downtime of 0."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from common import NoAnswer, gap_during  # noqa: E402


def test_the_longest_silence_across_the_move() -> None:
    answers = [0.0, 0.1, 0.2, 1.0, 1.1, 3.5, 3.6]
    assert gap_during(answers, 0.5, 1.05) == pytest.approx(0.8)
    assert gap_during(answers, 1.2, 3.0) == pytest.approx(2.4)


def test_no_answer_after_the_move_fails_the_run() -> None:
    with pytest.raises(NoAnswer, match="after the move"):
        gap_during([0.0, 0.1, 0.2], 0.5, 1.0)
    with pytest.raises(NoAnswer):  # a pinger that never answered at all
        gap_during([], 0.5, 1.0)


def test_no_answer_before_the_move_fails_the_run() -> None:
    with pytest.raises(NoAnswer, match="before the move"):
        gap_during([2.0, 2.1], 0.5, 1.0)
