"""Pulling an instance's image from the registry, with progress the user can watch.

dockerd reports progress per layer ("Downloading" current/total, "Already exists",
"Download complete", "Extracting", "Pull complete"); `PullMeter` adds the layers up into one
line such as "pulling 37% (1.2 MB of 3.3 MB)" and hands it on at most every `interval`
seconds, so a fast pull costs a few reports, not hundreds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dockyard.model.units import format_size

REPORT_INTERVAL = 0.5  # seconds: about two progress reports a second
DONE = {"Already exists", "Download complete", "Pull complete", "Verifying Checksum"}


class PullMeter:
    def __init__(self, report: Callable[[str], None], interval: float = REPORT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._report = report
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._layers: dict[str, tuple[int, int]] = {}  # layer id -> (current, total) bytes
        self._done: set[str] = set()

    def line(self) -> str | None:
        """The progress so far; None while no layer has said how big it is."""
        current = sum(self._layers[i][1] if i in self._done else self._layers[i][0]
                      for i in self._layers)
        total = sum(t for _, t in self._layers.values())
        if not total:
            return None
        return (f"pulling {min(100, current * 100 // total)}% "
                f"({format_size(current)} of {format_size(total)})")

    def feed(self, message: dict[str, Any]) -> None:
        layer, status = message.get("id"), str(message.get("status") or "")
        detail = message.get("progressDetail") or {}
        if layer and status == "Downloading" and detail.get("total"):
            self._layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
        elif layer and status in DONE:
            self._done.add(layer)
        else:
            return
        now, line = self._clock(), self.line()
        if line is not None and now - self._last >= self._interval:
            self._last = now
            self._report(line)
