"""Shared test settings: every test module must collect something (no silent empty runs), and
a part of the machine a test needs is a skip on a developer's machine but a failure under CI
or `make test` (tests/requirements.py)."""

from __future__ import annotations

import pytest

from tests.requirements import MARK, missing


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(present, what, step): a part the test needs "
                                       "(tests/requirements.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(MARK):
        if not mark.kwargs["present"]:
            missing(mark.kwargs["what"], mark.kwargs["step"])


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items and not session.config.getoption("--collect-only"):
        raise pytest.UsageError("no tests collected: the suite must never pass empty")
