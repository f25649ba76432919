"""tests/budget.py: under CI / make test a run longer than its budget + 20 % fails, after every
test has reported; elsewhere the time is not judged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.budget import (
    BUDGET_ENV,
    DEFAULT_BUDGET_MIN,
    SEED_ENV,
    SOAK_ENV,
    STARTED_ENV,
    budget_minutes,
    loop_count,
    loop_seed,
    over_budget,
    started_at,
)
from tests.requirements import REQUIRE_ALL

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("elapsed_s", "budget_min", "fails"), [
    (0, 25, False),
    (25 * 60, 25, False),           # on budget
    (30 * 60, 25, False),           # exactly +20 %: still within
    (30 * 60 + 1, 25, True),        # one second more
    (31.5 * 60, 25, True),          # the 31-min run of issue 17
    (12 * 60 + 1, 10, True),
    (12 * 60, 10, False)])
def test_over_budget_by_more_than_20_percent(elapsed_s: float, budget_min: float,
                                             fails: bool) -> None:
    verdict = over_budget(elapsed_s, budget_min)
    assert (verdict is not None) is fails
    if fails:
        assert verdict is not None and f"{budget_min:g} min budget" in verdict


@pytest.mark.parametrize(("env", "expected"), [
    ({}, DEFAULT_BUDGET_MIN), ({BUDGET_ENV: ""}, DEFAULT_BUDGET_MIN), ({BUDGET_ENV: "40"}, 40.0),
    ({BUDGET_ENV: " 2.5 "}, 2.5)])
def test_budget_from_the_environment(env: dict[str, str], expected: float) -> None:
    assert budget_minutes(env) == expected


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf"])
def test_a_budget_that_is_not_a_positive_number_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=BUDGET_ENV):
        budget_minutes({BUDGET_ENV: value})


MODULE = """
def test_passes():
    pass
"""


def _through_conftest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                      env: dict[str, str]) -> pytest.RunResult:
    """One passing test run under the suite's conftest hooks with `env` (not under CI, and
    not timed from the start `make test` exported for the run this test is part of)."""
    monkeypatch.setenv("CI", "")
    monkeypatch.delenv(STARTED_ENV, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_sessionstart, "
                          "pytest_sessionfinish, pytest_terminal_summary")
    pytester.makepyfile(test_quick=MODULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    return result


@pytest.mark.parametrize(("require_all", "budget", "code", "says"), [
    ("1", "0.00001", 1, True),      # 0.6 ms: any run is longer; fails although the test passed
    ("1", "60", 0, False),
    ("", "0.00001", 0, False)])     # a developer's run: time is not judged
def test_the_budget_through_the_suites_conftest(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, require_all: str,
        budget: str, code: int, says: bool) -> None:
    result = _through_conftest(pytester, monkeypatch, {REQUIRE_ALL: require_all,
                                                       BUDGET_ENV: budget})
    assert result.ret == code
    assert ("over the" in result.stdout.str()) is says


@pytest.mark.parametrize(("env", "expected"), [
    ({}, 500.0), ({STARTED_ENV: ""}, 500.0), ({STARTED_ENV: "120"}, 120.0),
    ({STARTED_ENV: " 499.5 "}, 499.5), ({STARTED_ENV: "500"}, 500.0)])
def test_the_run_starts_when_the_makefile_says(env: dict[str, str], expected: float) -> None:
    assert started_at(500.0, env) == expected


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf", "501"])
def test_a_start_that_is_not_a_past_time_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=STARTED_ENV):
        started_at(500.0, {STARTED_ENV: value})


@pytest.mark.parametrize(("hours_ago", "code"), [(2, 1), (0, 0)])
def test_the_second_run_of_make_test_counts_from_the_first(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, hours_ago: int,
        code: int) -> None:
    """A run that itself takes a second but began (its first part) two hours ago is over a
    one-hour budget."""
    result = _through_conftest(pytester, monkeypatch, {
        REQUIRE_ALL: "1", BUDGET_ENV: "60",
        STARTED_ENV: str(int(time.time()) - hours_ago * 3600)})
    assert result.ret == code
    assert ("over the 60 min budget" in result.stdout.str()) is bool(code)


def test_a_bad_budget_is_a_usage_error(pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BUDGET_ENV, "soon")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest("from tests.conftest import pytest_configure")
    pytester.makepyfile(test_quick=MODULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert BUDGET_ENV in result.stderr.str()


@pytest.mark.parametrize(("env", "count"), [
    ({}, 2), ({SOAK_ENV: "0"}, 2), ({SOAK_ENV: "1"}, 20)])
def test_a_soak_loop_is_short_in_the_suite_and_long_under_make_soak(
        env: dict[str, str], count: int) -> None:
    assert loop_count(suite=2, soak=20, env=env) == count


def test_a_soak_loop_seed_is_fixed_in_the_suite_fresh_under_soak_and_replayable() -> None:
    assert loop_seed(9, env={}) == 9
    fresh = {loop_seed(9, env={SOAK_ENV: "1"}) for _ in range(5)}
    assert len(fresh) > 1, "under make soak each run draws its own seed"
    assert loop_seed(9, env={SOAK_ENV: "1", SEED_ENV: "1234"}) == 1234
    assert loop_seed(9, env={SEED_ENV: "77"}) == 77
