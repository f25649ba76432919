"""tests/requirements.py: a missing part skips on a developer's machine and fails, naming the
set-up step, under CI=true or DOCKYARD_TEST_REQUIRE_ALL=1 (what `make test` sets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.requirements import REQUIRE_ALL, missing, required

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False), ({"CI": "false"}, False), ({REQUIRE_ALL: "0"}, False),
    ({"CI": "true"}, True), ({"CI": "TRUE"}, True), ({REQUIRE_ALL: "1"}, True)])
def test_required_by_environment(env: dict[str, str], expected: bool) -> None:
    assert required(env) is expected


def test_missing_skips_on_a_developer_machine() -> None:
    with pytest.raises(pytest.skip.Exception, match="lxcfs is missing: scripts/setup.sh"):
        missing("lxcfs", "scripts/setup.sh", env={})


@pytest.mark.parametrize("env", [{"CI": "true"}, {REQUIRE_ALL: "1"}])
def test_missing_fails_under_ci_or_make_test(env: dict[str, str]) -> None:
    with pytest.raises(pytest.fail.Exception,
                       match="the criu 4.1 tree is missing: scripts/setup.sh"):
        missing("the criu 4.1 tree", "scripts/setup.sh", env=env)


MODULE = """
from tests.requirements import requires
import pytest

pytestmark = [requires(False, "a tool", "scripts/setup.sh (apt packages)")]

def test_needs_the_tool():
    pass
"""


@pytest.mark.parametrize(("env", "outcome"), [
    ({"CI": "", REQUIRE_ALL: ""}, {"skipped": 1}),
    ({"CI": "true", REQUIRE_ALL: ""}, {"errors": 1}),
    ({"CI": "", REQUIRE_ALL: "1"}, {"errors": 1})])
def test_the_marker_through_the_suites_conftest(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
        outcome: dict[str, int]) -> None:
    """A module marked with `requires` under the real tests/conftest.py hook."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_runtest_setup")
    pytester.makepyfile(test_part=MODULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(**outcome)
    if "errors" in outcome:
        result.stdout.fnmatch_lines(["*a tool is missing: scripts/setup.sh (apt packages) "
                                     "should have provided it*"])
