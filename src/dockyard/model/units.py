"""Human sizes: `256M`, `1.5G`, `1048576`. Binary multiples, like Docker's `--memory`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import JsonValue

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int) -> int:
    """Bytes from `256M` / `1g` / `512MiB` / an int. Raises ValueError with a readable text."""
    if isinstance(value, bool):
        raise ValueError("size must be a number with an optional unit such as 256M")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("size must not be negative")
        if value > MAX_AMOUNT:
            raise ValueError(f"size is too large (at most {MAX_AMOUNT})")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. 256M, 1G, 1048576)")
    number, unit, _ = match.groups()
    return _amount(number, _MULT[unit.lower()], "size")


# The largest amount: what dockerd, the kernel's int64 limits and SQLite hold, cut to the
# integers a JSON number carries exactly (RFC 7493; clients that read numbers as doubles, as
# JavaScript, would otherwise see other values near 2**63).
MAX_AMOUNT = 2**53 - 1

# The JSON Schema of the size and rate fields (`str | int | None`): a pattern for the string
# form (the usual spellings, each within the field's floor and MAX_AMOUNT) and bounds for
# the number; what it accepts the parsers accept.
_BIN = "[iI]?[bB]?"
MEMORY_SCHEMA: dict[str, JsonValue] = {
    "pattern": (r"^(?:[1-9][0-9]{7,14}|(?:[1-9][0-9]{4,11}[kK]|(?:[6-9]|[1-9][0-9]{1,8})[mM]"
                rf"|[1-9][0-9]{{0,5}}[gG]|[1-9][0-9]{{0,2}}[tT]){_BIN})$"),
    "minimum": 6 << 20, "maximum": MAX_AMOUNT}
IO_SCHEMA: dict[str, JsonValue] = {
    "pattern": (r"^(?:0|[1-9][0-9]{0,14}|(?:[1-9][0-9]{0,11}[kK]|[1-9][0-9]{0,8}[mM]"
                rf"|[1-9][0-9]{{0,5}}[gG]){_BIN})$"),
    "minimum": 0, "maximum": MAX_AMOUNT}
RATE_SCHEMA: dict[str, JsonValue] = {
    "pattern": (r"^(?:0|(?:[89]|[1-9][0-9]{1,11})kbit|[1-9][0-9]{0,8}mbit"
                r"|[1-9][0-9]{0,5}gbit)$"),
    "minimum": 0, "maximum": MAX_AMOUNT,
    "not": {"type": "integer", "minimum": 1, "maximum": 7999}}  # 0: no limit; else >= 8kbit


def _amount(number: str, mult: int, what: str) -> int:
    try:
        amount = int(float(number) * mult)
    except OverflowError as exc:
        raise ValueError(f"{what} {number} is too large") from exc
    if amount > MAX_AMOUNT:
        raise ValueError(f"{what} is too large (at most {MAX_AMOUNT})")
    return amount


def format_size(num: int | None) -> str:
    if num is None:
        return "-"
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if num >= mult and num % (mult // 1024 or 1) == 0 or num >= mult * 10:
            value = num / mult
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{num}B"


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps|[kmg]?)\s*$",
                   re.IGNORECASE)
_RATE_MULT = {"": 1, "bit": 1, "k": 10**3, "kbit": 10**3, "m": 10**6, "mbit": 10**6,
              "g": 10**9, "gbit": 10**9, "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6,
              "gbps": 8 * 10**9}


def parse_rate(value: str | int) -> int:
    """Bits per second from tc-style rates: `50mbit`, `1gbit`, `500kbit`, `10mbps` (bytes),
    `50M` (= 50mbit), or an int (bits/s). Decimal multiples, as tc."""
    if isinstance(value, bool):
        raise ValueError("rate must be a number with an optional unit such as 50mbit")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("rate must be positive")
        if value > MAX_AMOUNT:
            raise ValueError(f"rate is too large (at most {MAX_AMOUNT})")
        return value
    match = _RATE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a rate (use e.g. 50mbit, 1gbit, 500kbit)")
    number, unit = match.groups()
    rate = _amount(number, _RATE_MULT[unit.lower()], "rate")
    if rate <= 0:
        raise ValueError("rate must be positive")
    return rate


def format_rate(bits: int | None) -> str:
    if bits is None:
        return "-"
    for unit, mult in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits >= mult:
            value = bits / mult
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{bits}bit"
