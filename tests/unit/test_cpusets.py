"""cpusets: list syntax, exclusive core choice and the shared-pool invariant."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidRequest, NoCapacity
from dockyard.scheduler.cpusets import (
    allocate_exclusive,
    format_cpuset,
    parse_cpuset,
    shared_pool,
)


@pytest.mark.parametrize(
    ("spec", "cores"),
    [
        ("", []),
        ("0", [0]),
        ("0-3,5", [0, 1, 2, 3, 5]),
        ("5,0-3", [0, 1, 2, 3, 5]),
        ("0-3,2-4", [0, 1, 2, 3, 4]),
        ("0-7\n", [0, 1, 2, 3, 4, 5, 6, 7]),
        (" 1 , 3 - 4 ", [1, 3, 4]),
    ],
)
def test_parse_cpuset(spec: str, cores: list[int]) -> None:
    assert parse_cpuset(spec) == cores


@pytest.mark.parametrize("spec", ["a", "0-", "-3", "3-1", "1,,2", "0-3-5", "²"])
def test_parse_cpuset_rejects(spec: str) -> None:
    with pytest.raises(InvalidRequest, match="cpuset"):
        parse_cpuset(spec)


@pytest.mark.parametrize(
    ("cores", "spec"),
    [
        ([], ""),
        ([0], "0"),
        ([0, 1, 2, 3, 5], "0-3,5"),
        ([5, 3, 1, 2, 0], "0-3,5"),
        ([1, 1, 2], "1-2"),
        ([0, 2, 4], "0,2,4"),
        ([7, 8, 10, 11, 12], "7-8,10-12"),
    ],
)
def test_format_cpuset(cores: list[int], spec: str) -> None:
    assert format_cpuset(cores) == spec
    assert parse_cpuset(spec) == sorted(set(cores))


def test_format_cpuset_rejects_negative() -> None:
    with pytest.raises(InvalidRequest, match="negative"):
        format_cpuset([-1, 0])


CORES8 = list(range(8))


@pytest.mark.parametrize(
    ("cores", "taken", "reserved", "n", "chosen"),
    [
        (CORES8, [], [], 0, []),
        (CORES8, [], [], 2, [6, 7]),
        (CORES8, [7], [], 2, [5, 6]),
        (CORES8, [6], [0], 3, [4, 5, 7]),
        (CORES8, [], [0], 6, [2, 3, 4, 5, 6, 7]),  # core 1 left shared
        (CORES8, [], [], 7, [1, 2, 3, 4, 5, 6, 7]),  # core 0 left shared
        ([0, 1], [], [], 1, [1]),
        ([2, 4, 6], [9], [], 2, [4, 6]),  # taken cores unknown to the host are ignored
    ],
)
def test_allocate_exclusive(
    cores: list[int], taken: list[int], reserved: list[int], n: int, chosen: list[int]
) -> None:
    got = allocate_exclusive(cores, taken, reserved, n)
    assert got == chosen
    assert shared_pool(cores, list(taken) + got, reserved), "shared pool must stay non-empty"


@pytest.mark.parametrize(
    ("cores", "taken", "reserved", "n", "message"),
    [
        ([0, 1], [1], [], 2,
         "asked for 2 exclusive cores; 1 free and at least one core must stay in the shared pool"),
        ([0, 1], [], [], 2,
         "asked for 2 exclusive cores; 2 free and at least one core must stay in the shared pool"),
        ([0], [], [], 1,
         "asked for 1 exclusive core; 1 free and at least one core must stay in the shared pool"),
        (CORES8, [4, 5, 6, 7], [0, 1], 2,
         "asked for 2 exclusive cores; 2 free and at least one core must stay in the shared pool"),
        ([0, 1], [1], [0], 1,
         "asked for 1 exclusive core; 0 free and at least one core must stay in the shared pool"),
    ],
)
def test_allocate_exclusive_keeps_one_core_shared(
    cores: list[int], taken: list[int], reserved: list[int], n: int, message: str
) -> None:
    with pytest.raises(NoCapacity) as info:
        allocate_exclusive(cores, taken, reserved, n)
    assert info.value.message == message


def test_allocate_exclusive_until_full_never_empties_the_shared_pool() -> None:
    taken: list[int] = []
    while True:
        try:
            taken += allocate_exclusive(CORES8, taken, [0], 1)
        except NoCapacity:
            break
    assert sorted(taken) == [2, 3, 4, 5, 6, 7]
    assert shared_pool(CORES8, taken, [0]) == [1]


def test_allocate_exclusive_rejects_negative() -> None:
    with pytest.raises(InvalidRequest, match="negative"):
        allocate_exclusive(CORES8, [], [], -1)


@pytest.mark.parametrize(
    ("cores", "taken", "reserved", "pool"),
    [
        (CORES8, [], [], CORES8),
        (CORES8, [6, 7], [0], [1, 2, 3, 4, 5]),
        ([3, 1, 2], [], [], [1, 2, 3]),
        ([0, 1], [1], [0], []),  # only after the host was reconfigured; documented
    ],
)
def test_shared_pool(
    cores: list[int], taken: list[int], reserved: list[int], pool: list[int]
) -> None:
    assert shared_pool(cores, taken, reserved) == pool
