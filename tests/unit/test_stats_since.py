"""`since` of the stats history: every value its schema pattern admits parses, the rest is a
400/422 (schemathesis' positive data acceptance found schema-valid values refused)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dockyard.errors import InvalidRequest
from dockyard.server.routers.stats import SINCE_PATTERN, parse_since

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    (None, NOW - timedelta(minutes=10)),
    ("", NOW - timedelta(minutes=10)),
    ("60", NOW - timedelta(seconds=60)),
    ("0.5", NOW - timedelta(seconds=0.5)),
    ("999999999", NOW - timedelta(seconds=999999999)),
    ("2026-12-06", datetime(2026, 12, 6, tzinfo=UTC)),
    ("2026-12-06T10:30", datetime(2026, 12, 6, 10, 30, tzinfo=UTC)),
    ("2026-12-06 10:30:05.25Z", datetime(2026, 12, 6, 10, 30, 5, 250000, tzinfo=UTC)),
    ("2026-12-06T10:30:00+02:00", datetime(2026, 12, 6, 8, 30, tzinfo=UTC)),
    ("2026-02-30", datetime(2026, 2, 28, tzinfo=UTC)),  # an impossible day: the month's last
    ("2024-02-31T01:00", datetime(2024, 2, 29, 1, 0, tzinfo=UTC)),
])
def test_what_the_pattern_admits_parses(value: str | None, expected: datetime) -> None:
    if value:
        assert re.fullmatch(SINCE_PATTERN, value)
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["nan", "inf", "1e9", "-5", "2026-13-01", "0000-01-01",
                                   "2026-12-06T24:00", "yesterday", "2026-12-06T10:00+24:00"])
def test_what_the_pattern_refuses_is_refused(value: str) -> None:
    assert not re.fullmatch(SINCE_PATTERN, value)
    with pytest.raises(InvalidRequest):
        parse_since(value, NOW)
