"""Healthchecks as Docker runs them, and the Go/Compose durations they are written in.

`HealthcheckSpec` is what a compose `healthcheck` becomes (compose/build.py), what an
instance carries (`InstanceCreate.healthcheck`) and what the agent gives dockerd
(`HEALTHCHECK`: test, interval, timeout, retries, start_period). Docker's state of it is one
of `HealthState`; an instance without a healthcheck is `none`.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a Go/Compose duration: `1m30s`, `500ms`, `2h`, `10s`; a bare number is
    seconds. Raises ValueError with a readable text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a duration is written like 30s, 1m30s or 500ms")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration must not be negative")
        return _finite(float(value))
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return _finite(float(text))
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 1m30s, 500ms)")
    return _finite(total)


def _finite(seconds: float) -> float:
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    return seconds



class HealthState(StrEnum):
    """Docker's `State.Health.Status`; `none`: the container has no healthcheck."""

    none = "none"
    starting = "starting"
    healthy = "healthy"
    unhealthy = "unhealthy"


YEAR = 365 * 86400.0
# seconds as a JSON number only (compose/build.py parses `1m30s`): what the schema says
Duration = Annotated[float, Field(ge=0, le=YEAR, strict=True, description="seconds")]


class HealthcheckSpec(BaseModel):
    """`test` as Docker stores it: `["CMD", arg, …]` or `["CMD-SHELL", "command"]`; any other
    list is an argv, stored as `["CMD", *argv]`. Docker's defaults; a duration under 1ms
    (Docker's least, 0 meaning its default) is rounded up to 1ms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test: tuple[str, ...] = Field(min_length=2, max_length=64)
    interval: Duration = 30.0
    timeout: Duration = 30.0
    retries: Annotated[int, Field(ge=1, le=1000)] = 3
    start_period: Duration = 0.0

    @field_validator("interval", "timeout", "start_period")
    @classmethod
    def _duration(cls, seconds: float) -> float:
        return 0.001 if 0 < seconds < 0.001 else seconds

    @field_validator("test")
    @classmethod
    def _test(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return value if value[0] in ("CMD", "CMD-SHELL") else ("CMD", *value)

    def monitor_default(self) -> float:
        """How long a new replica may take to become healthy: start_period + interval × retries
        (a healthcheck's own give-up time)."""
        return self.start_period + self.interval * self.retries

    def docker(self) -> dict[str, object]:
        """As dockerd's API takes it: durations in nanoseconds."""
        return {"test": list(self.test), "interval": _ns(self.interval),
                "timeout": _ns(self.timeout), "retries": self.retries,
                "start_period": _ns(self.start_period)}


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))
