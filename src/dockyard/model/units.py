"""Human sizes: `256M`, `1.5G`, `1048576`. Binary multiples, like Docker's `--memory`."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int) -> int:
    """Bytes from `256M` / `1g` / `512MiB` / an int. Raises ValueError with a readable text."""
    if isinstance(value, bool):
        raise ValueError("size must be a number with an optional unit such as 256M")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("size must not be negative")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. 256M, 1G, 1048576)")
    number, unit, _ = match.groups()
    return int(float(number) * _MULT[unit.lower()])


def format_size(num: int | None) -> str:
    if num is None:
        return "-"
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if num >= mult and num % (mult // 1024 or 1) == 0 or num >= mult * 10:
            value = num / mult
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{num}B"
