"""The one CPU-list parser (model/cpulist.py) and its two callers' error types."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidRequest
from dockyard.model.cpulist import parse_cpu_list
from dockyard.scheduler.cpusets import parse_cpuset


@pytest.mark.parametrize(("text", "cores"), [("0-1\n", [0, 1]), ("0,2-3", [0, 2, 3]),
                                             ("", [])])
def test_kernel_lists(text: str, cores: list[int]) -> None:
    assert parse_cpu_list(text) == cores


@pytest.mark.parametrize("text", ["1,,2", "3-1", "x"])
def test_bad_list_is_a_value_error_here_and_invalid_request_in_the_scheduler(text: str) -> None:
    with pytest.raises(ValueError, match="cpuset"):
        parse_cpu_list(text)
    with pytest.raises(InvalidRequest, match="cpuset"):
        parse_cpuset(text)
