"""Polling a condition with a deadline, for tests that wait on a cluster (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T | None], message: str, timeout: float = 90.0,
          every: float = 0.3) -> T:
    """Call `check` every `every` seconds until it returns a true value, which is returned;
    AssertionError(`message`) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, message
        time.sleep(every)
