"""The suite's time budget (issue 17 item 8): `make test` must stay within 25 minutes on the
2-core test machine as tests are added. Under CI (`CI=true`) or `make test`
(`DOCKYARD_TEST_REQUIRE_ALL=1`) a pytest run whose wall time exceeds the budget by more than
20 % fails, after every test has run and reported (tests/conftest.py); the slowest tests are
listed above the verdict (`--durations=40` in the Makefile), which says where to look.

`DOCKYARD_TEST_BUDGET_MIN` sets another budget in minutes (a slower machine, a partial run);
the tolerance stays 20 %. `make test` runs the unit tests (in parallel, pytest-xdist) and the
rest as two pytest runs; `DOCKYARD_TEST_STARTED` (Unix time, set once by the Makefile) makes
each run count from the start of the first, so the budget holds for both together.

Long randomised loops belong in `make soak`: a test marked `soak` runs its loop a few times
from a fixed seed in the suite (`loop_count(suite, soak)`, `loop_seed(fixed)`) and many times
from a fresh seed under `make soak` (DOCKYARD_SOAK=1, which runs the marked tests and then
tests/soak.py's kill -9 loop); DY_SEED replays a seed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

BUDGET_ENV = "DOCKYARD_TEST_BUDGET_MIN"
STARTED_ENV = "DOCKYARD_TEST_STARTED"
DEFAULT_BUDGET_MIN = 25.0
TOLERANCE = 0.20


def _number(raw: str) -> float:
    """`raw` as a float; NaN (refused by every caller's range check) when it is not one."""
    try:
        return float(raw)
    except ValueError:
        return float("nan")


def budget_minutes(env: Mapping[str, str] = os.environ) -> float:
    """The budget from the environment; a value that is not a positive number is refused."""
    raw = env.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_MIN
    value = _number(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{BUDGET_ENV}={raw!r}: a positive number of minutes")
    return value


def started_at(now: float, env: Mapping[str, str] = os.environ) -> float:
    """When the timed run began (Unix time): DOCKYARD_TEST_STARTED when set, else `now`
    (this pytest run's own start); a value that is not a time before `now` is refused."""
    raw = env.get(STARTED_ENV, "").strip()
    if not raw:
        return now
    value = _number(raw)
    if not 0 < value <= now:
        raise ValueError(f"{STARTED_ENV}={raw!r}: the Unix time the timed run began")
    return value


def over_budget(elapsed_s: float, budget_min: float, tolerance: float = TOLERANCE) -> str | None:
    """None while `elapsed_s` stays within the budget plus the tolerance; else why it failed."""
    limit_s = budget_min * 60 * (1 + tolerance)
    if elapsed_s <= limit_s:
        return None
    return (f"the run took {elapsed_s / 60:.1f} min, over the {budget_min:g} min budget by "
            f"more than {tolerance:.0%} (limit {limit_s / 60:.1f} min, {BUDGET_ENV}): "
            "speed up the slowest tests above or move long randomised loops to `make soak`")


# -- long randomised loops: short and fixed in the suite, long and random under `make soak` --

SOAK_ENV = "DOCKYARD_SOAK"
SEED_ENV = "DY_SEED"


def soaking(env: Mapping[str, str] = os.environ) -> bool:
    """True under `make soak` (DOCKYARD_SOAK=1): tests marked `soak` run their long loop."""
    return env.get(SOAK_ENV, "") == "1"


def loop_count(suite: int, soak: int, env: Mapping[str, str] = os.environ) -> int:
    """How many times a randomised loop runs: `suite` in the suite, `soak` under make soak."""
    return soak if soaking(env) else suite


def loop_seed(suite: int, env: Mapping[str, str] = os.environ) -> int:
    """The seed of a randomised loop: DY_SEED when set (to replay a soak failure), else fixed
    in the suite and a fresh one under make soak (the caller reports it with its failures)."""
    if raw := env.get(SEED_ENV, "").strip():
        return int(raw)
    return int.from_bytes(os.urandom(4), "big") if soaking(env) else suite
