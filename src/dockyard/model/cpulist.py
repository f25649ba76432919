"""The kernel's CPU list syntax ("0-3,5"), parsed in one place.

Read from `cpuset.cpus` files, /sys/devices/system/cpu/online, the `cpuset` of instance
limits and the `--cores`/`--reserved-cores` options. The scheduler turns a ValueError into
InvalidRequest (`scheduler.cpusets.parse_cpuset`); the host inventory falls back on it.
"""

from __future__ import annotations

__all__ = ["parse_cpu_list"]


def _number(text: str, spec: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"cpuset {spec!r} is not a valid CPU list (bad number {text!r})")
    return int(digits)


def parse_cpu_list(spec: str) -> list[int]:
    """`"0-3,5"` -> `[0, 1, 2, 3, 5]` (sorted, without duplicates; `""` -> `[]`).

    Blanks around numbers and a trailing newline are accepted (what `cpuset.cpus` files
    contain); anything else, an empty item or a decreasing range is a ValueError.
    """
    cores: set[int] = set()
    text = spec.strip()
    if not text:
        return []
    for part in text.split(","):
        low, sep, high = part.partition("-")
        start = _number(low, spec)
        end = _number(high, spec) if sep else start
        if end < start:
            raise ValueError(f"cpuset {spec!r} has a decreasing range {part.strip()!r}")
        cores.update(range(start, end + 1))
    return sorted(cores)
