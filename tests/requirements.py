"""One rule for a part of the machine a test needs (root, a tool, PostgreSQL, lxcfs, the criu
tree, a kernel feature): missing, the test skips on a developer's machine, but under CI
(`CI=true`) or `make test` (`DOCKYARD_TEST_REQUIRE_ALL=1`) it FAILS and names the set-up step
that should have provided it, so a run where every such test skipped can never pass there.

    pytestmark = [requires(shutil.which("lxcfs") is not None, "lxcfs", "scripts/setup.sh")]
    ...
    if not found:
        missing("the criu 4.2 tree", "scripts/setup.sh (scripts/criu-wrapper --build)")

`requires` is a marker handled by tests/conftest.py at set-up time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

import pytest

REQUIRE_ALL = "DOCKYARD_TEST_REQUIRE_ALL"
MARK = "dockyard_requires"
ROOT_STEP = "run the tests as root (make test; scripts/setup.sh needs root too)"


def required(env: Mapping[str, str] = os.environ) -> bool:
    """True under CI or `make test`: a missing part is a failure, not a skip."""
    return env.get(REQUIRE_ALL, "") == "1" or env.get("CI", "").lower() in ("true", "1")


def message(what: str, step: str) -> str:
    return f"{what} is missing: {step} should have provided it"


def missing(what: str, step: str, env: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip — or under CI / make test fail — because `what` is not on this machine."""
    text = message(what, step)
    if required(env):
        pytest.fail(f"{text} (a missing part fails under CI=true or {REQUIRE_ALL}=1)",
                    pytrace=False)
    pytest.skip(text)


def requires(present: bool, what: str, step: str) -> pytest.MarkDecorator:
    """A marker: the test needs `what`; when not `present`, `missing(what, step)` at set-up."""
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARK)(present=present, what=what,
                                                             step=step)
    return mark


def requires_root() -> pytest.MarkDecorator:
    return requires(os.geteuid() == 0, "root", ROOT_STEP)
