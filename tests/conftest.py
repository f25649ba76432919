"""Shared test settings: every test module must collect something (no silent empty runs)."""

from __future__ import annotations

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items and not session.config.getoption("--collect-only"):
        raise pytest.UsageError("no tests collected: the suite must never pass empty")
