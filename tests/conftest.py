"""Shared test settings: every test module must collect something (no silent empty runs), a
part of the machine a test needs is a skip on a developer's machine but a failure under CI
or `make test` (tests/requirements.py), and there a run over its time budget fails
(tests/budget.py)."""

from __future__ import annotations

import time

import pytest

from tests.budget import budget_minutes, over_budget, started_at
from tests.requirements import MARK, missing, required

_STARTED = pytest.StashKey[float]()
_VERDICT = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(present, what, step): a part the test needs "
                                       "(tests/requirements.py)")
    config.addinivalue_line("markers", "soak: a randomised loop, short in the suite and long "
                                       "under `make soak` (tests/budget.py)")
    try:
        budget_minutes()
        started_at(time.time())
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(MARK):
        if not mark.kwargs["present"]:
            missing(mark.kwargs["what"], mark.kwargs["step"])


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items and not session.config.getoption("--collect-only"):
        raise pytest.UsageError("no tests collected: the suite must never pass empty")


def pytest_sessionstart(session: pytest.Session) -> None:
    session.stash[_STARTED] = started_at(time.time())  # wall time: shared by two runs


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI / make test, a run over its budget by more than 20 % fails (tests/budget.py);
    the verdict is printed by `pytest_terminal_summary`, which runs after this hook."""
    if not required() or _STARTED not in session.stash:
        return
    verdict = over_budget(time.time() - session.stash[_STARTED], budget_minutes())
    if verdict is None:
        return
    session.config.stash[_VERDICT] = verdict
    if exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    verdict = terminalreporter.config.stash.get(_VERDICT, None)
    if verdict is not None:
        terminalreporter.section("time budget", sep="=", red=True, bold=True)
        terminalreporter.line(f"FAILED: {verdict}", red=True)
