"""Run a `dockyard` command with one fault point armed: when the process reaches it, the point's
name is appended to MARKER and the process SIGKILLs itself (as `kill -9` would).

    python -m tests.faultrun POINT MARKER -- server --home …
    python -m tests.faultrun pause:POINT MARKER -- agent …
    python -m tests.faultrun gated:POINT MARKER -- agent …

With `pause:` the process instead waits at the point (once) until the file MARKER.release
appears, so a test can change the world (remove an image, stop dockerd, take a name) exactly
there, then let it go on.

With `gated:` (also `gated:pause:POINT`) the point is live only while the file MARKER.armed
exists: passes before it (the restart's own resync, re-reports of other instances) go by.
A caller restarts the process armed, lets it settle, creates MARKER.armed and only then sends
the request that should reach the point (tests/soak.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from dockyard import faults
from dockyard.cli.main import main

MODIFIERS = frozenset({"pause", "gated"})


def _record(marker: str, name: str) -> None:
    with open(marker, "a") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def gate_path(marker: str) -> str:
    return marker + ".armed"


def parse(spec: str) -> tuple[str, set[str]]:
    """`[MODIFIER:]…POINT` → (point, modifiers)."""
    *mods, point = spec.split(":")
    if point not in faults.POINTS:
        raise SystemExit(f"unknown fault point {point}")
    if unknown := set(mods) - MODIFIERS:
        raise SystemExit(f"unknown fault modifier(s) {sorted(unknown)} in {spec}")
    return point, set(mods)


def arm(spec: str, marker: str) -> None:
    point, mods = parse(spec)
    pause, gate = "pause" in mods, gate_path(marker) if "gated" in mods else None
    paused: list[str] = []

    def hook(name: str) -> None:
        if name != point or (gate is not None and not os.path.exists(gate)):
            return
        if not pause:
            _record(marker, name)
            os.kill(os.getpid(), signal.SIGKILL)
        if paused:
            return
        paused.append(name)
        _record(marker, name)
        release = marker + ".release"
        while not os.path.exists(release):
            time.sleep(0.02)
        os.unlink(release)

    faults.install(hook)


if __name__ == "__main__":
    point, marker, sep, *rest = sys.argv[1:]
    assert sep == "--", "usage: faultrun POINT MARKER -- ARGS…"
    arm(point, marker)
    sys.argv = ["dockyard", *rest]
    main()
